//! The one answer to "may this principal do X on feed F in group G" (and "is
//! this user an administrator"), for the API, forward auth and verification
//! alike. Pure: it reads a [`SecurityModel`] snapshot and a principal, nothing
//! else. The rules are those of `guarding.md` sections 1 and 2.

use proget_api::{ApiKeyType, PackagePermission, SystemApi};

use crate::domain::{
    same_name, Permission, Principal, Scope, SecurityModel, Task, User, ANONYMOUS,
};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any valid credential.
    AnyValid,
    /// A feed permission on a feed and/or a feed group.
    Feed {
        /// The feed.
        feed: Option<&'a str>,
        /// The feed group the feed belongs to.
        group: Option<&'a str>,
        /// The permission.
        permission: PackagePermission,
    },
    /// A system API (`feeds`, `sca`, `sbom-upload`): a system key holding it,
    /// a full-control key, or an administrator.
    SystemApi(SystemApi),
    /// `Administer` globally (managing keys, users, groups and permissions).
    Administer,
}

/// Whether `principal` (`None`: no credential, so `Anonymous`) may do what
/// `need` says. The principal has been authenticated already: expired keys
/// and the like never get here.
pub fn allows(model: &SecurityModel, principal: Option<&Principal>, need: Need<'_>) -> bool {
    let Some(principal) = principal else {
        return need != Need::AnyValid && user_allows(model, ANONYMOUS, &[], need);
    };
    if let Principal::Key(key) = principal {
        match key.key_type {
            ApiKeyType::System => {
                let full = key.system_apis.contains(&SystemApi::FullControl);
                return match need {
                    Need::AnyValid => true,
                    Need::Administer => full,
                    Need::SystemApi(api) => full || key.system_apis.contains(&api),
                    Need::Feed { .. } => full || key.system_apis.contains(&SystemApi::Feeds),
                };
            }
            ApiKeyType::Feed => {
                return match need {
                    Need::AnyValid => true,
                    Need::Administer | Need::SystemApi(_) => false,
                    Need::Feed {
                        feed,
                        group,
                        permission,
                    } => {
                        let on_feed =
                            matches!((&key.feed, feed), (Some(k), Some(f)) if same_name(k, f));
                        let on_group = matches!((&key.feed_group, group), (Some(k), Some(g)) if same_name(k, g));
                        (on_feed || on_group) && key.package_permissions.contains(&permission)
                    }
                };
            }
            // Legacy keys open nothing but "any valid credential".
            ApiKeyType::Other => return need == Need::AnyValid,
            ApiKeyType::Personal => {}
        }
    }
    match principal.user() {
        Some(user) => need == Need::AnyValid || user_allows(model, &user.name, &user.groups, need),
        // A personal key whose owner is gone is invalid; authentication refuses it.
        None => false,
    }
}

/// Whether a decision for this principal reads permissions at all: only
/// users (logins, pseudo-keys, personal keys) and `Anonymous` do. System,
/// feed and legacy keys are decided by the key alone, so their requests need
/// no [`SecurityModel`] (on PostgreSQL: no permissions query).
pub fn reads_permissions(principal: Option<&Principal>) -> bool {
    !matches!(principal, Some(Principal::Key(k)) if k.key_type != ApiKeyType::Personal)
}

/// Whether a user holds `Administer` globally (through themselves or a
/// group) with no deny removing it.
pub fn is_admin(model: &SecurityModel, user: &User) -> bool {
    user_allows(model, &user.name, &user.groups, Need::Administer)
}

/// Section 1's evaluation for a user name and their groups: any covering
/// deny of a task that grants the need → no; else any covering grant → yes.
fn user_allows(model: &SecurityModel, name: &str, groups: &[String], need: Need<'_>) -> bool {
    let mut granted = false;
    let own = model.of_user(name);
    let through_groups = groups.iter().flat_map(|g| model.of_group(g));
    for p in own.chain(through_groups) {
        if covers(p, need) {
            if p.deny {
                return false;
            }
            granted = true;
        }
    }
    granted
}

/// Whether a permission's scope and task cover the need.
fn covers(p: &Permission, need: Need<'_>) -> bool {
    match need {
        Need::AnyValid => false,
        Need::Administer | Need::SystemApi(_) => {
            p.task == Task::Administer && p.scope == Scope::Global
        }
        Need::Feed {
            feed,
            group,
            permission,
        } => {
            let in_scope = match &p.scope {
                Scope::Global => true,
                Scope::Feed(f) => feed.is_some_and(|x| same_name(f, x)),
                Scope::FeedGroup(g) => group.is_some_and(|x| same_name(g, x)),
            };
            in_scope && p.task.grants(permission)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Permission, StoredKey, Subject};
    use proget_api::Logging;
    use proptest::prelude::*;
    use PackagePermission::{Add, Delete, Promote, View};

    fn perm(id: i64, subject: Subject, task: Task, scope: Scope, deny: bool) -> Permission {
        Permission {
            id,
            subject,
            task,
            scope,
            deny,
        }
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            id: 1,
            name: name.into(),
            display_name: None,
            email: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn key(key_type: ApiKeyType) -> StoredKey {
        StoredKey {
            id: 1000,
            key_type,
            display_name: None,
            description: None,
            system_apis: vec![],
            package_permissions: vec![],
            feed: None,
            feed_group: None,
            expiration: None,
            logging: Logging::None,
            user: None,
            usage: Default::default(),
            grace_until: None,
        }
    }

    fn feed(f: &str, permission: PackagePermission) -> Need<'_> {
        Need::Feed {
            feed: Some(f),
            group: None,
            permission,
        }
    }

    fn in_group<'a>(f: &'a str, g: &'a str, permission: PackagePermission) -> Need<'a> {
        Need::Feed {
            feed: Some(f),
            group: Some(g),
            permission,
        }
    }

    fn standard() -> SecurityModel {
        use Subject::{Group, User as U};
        SecurityModel::new(vec![
            perm(
                1,
                Group("Administrators".into()),
                Task::Administer,
                Scope::Global,
                false,
            ),
            perm(
                2,
                Group("Developers".into()),
                Task::ViewPackages,
                Scope::Global,
                false,
            ),
            perm(
                3,
                Group("Developers".into()),
                Task::PublishPackages,
                Scope::Feed("npm-internal".into()),
                false,
            ),
            perm(
                4,
                U("jsmith".into()),
                Task::PublishPackages,
                Scope::Feed("npm-internal".into()),
                true,
            ),
            perm(
                5,
                Group("Release".into()),
                Task::PromotePackages,
                Scope::FeedGroup("public".into()),
                false,
            ),
            perm(
                6,
                U("Anonymous".into()),
                Task::ViewPackages,
                Scope::Feed("open".into()),
                false,
            ),
        ])
    }

    #[test]
    fn tasks_grant_the_documented_permissions() {
        let table: [(Task, &[PackagePermission]); 6] = [
            (Task::Administer, &[View, Add, Promote, Delete]),
            (Task::ViewPackages, &[View]),
            (Task::PublishPackages, &[View, Add]),
            (Task::PromotePackages, &[View, Promote]),
            (Task::DeletePackages, &[View, Delete]),
            (Task::ManageFeed, &[View, Add, Promote, Delete]),
        ];
        for (task, grants) in table {
            for p in [View, Add, Promote, Delete] {
                assert_eq!(task.grants(p), grants.contains(&p), "{task} {p}");
            }
            assert_eq!(task.name().parse::<Task>(), Ok(task));
            assert_eq!(task.name().to_uppercase().parse::<Task>(), Ok(task));
        }
        assert!("Administrate".parse::<Task>().is_err());
    }

    #[test]
    fn user_permissions_follow_section_one() {
        let m = standard();
        let dev = Principal::User(user("alice", &["developers"]));
        let jsmith = Principal::User(user("JSmith", &["Developers"]));
        let release = Principal::User(user("rel", &["Release"]));
        let admin = Principal::User(user("Admin", &["Administrators"]));
        let nobody = Principal::User(user("bob", &[]));
        #[rustfmt::skip]
        let table: &[(&Principal, Need, bool)] = &[
            (&dev, feed("anything", View), true),
            (&dev, feed("anything", Add), false),
            (&dev, feed("NPM-Internal", Add), true),
            (&dev, feed("npm-internal", Delete), false),
            (&jsmith, feed("npm-internal", Add), false),
            (&jsmith, feed("npm-internal", View), false),
            (&jsmith, feed("other", View), true),
            (&release, in_group("x", "public", Promote), true),
            (&release, in_group("x", "public", View), true),
            (&release, in_group("x", "private", Promote), false),
            (&release, feed("public", Promote), false),
            (&admin, feed("any", Delete), true),
            (&admin, Need::Administer, true),
            (&admin, Need::SystemApi(SystemApi::Sca), true),
            (&dev, Need::Administer, false),
            (&dev, Need::SystemApi(SystemApi::Feeds), false),
            (&nobody, feed("open", View), false),
            (&nobody, Need::AnyValid, true),
        ];
        for (i, (who, need, expected)) in table.iter().enumerate() {
            assert_eq!(allows(&m, Some(who), *need), *expected, "row {i}: {need:?}");
        }
    }

    #[test]
    fn anonymous_holds_only_what_is_granted_to_it() {
        let m = standard();
        assert!(allows(&m, None, feed("open", View)));
        assert!(allows(&m, None, feed("OPEN", View)));
        assert!(!allows(&m, None, feed("open", Add)));
        assert!(!allows(&m, None, feed("npm-internal", View)));
        assert!(!allows(&m, None, Need::AnyValid));
        assert!(!allows(&m, None, Need::Administer));
        assert!(!allows(&SecurityModel::default(), None, feed("open", View)));
    }

    #[test]
    fn credentials_follow_section_two() {
        let m = standard();
        let mut full = key(ApiKeyType::System);
        full.system_apis = vec![SystemApi::FullControl];
        let mut feeds = key(ApiKeyType::System);
        feeds.system_apis = vec![SystemApi::Feeds];
        let mut sca = key(ApiKeyType::System);
        sca.system_apis = vec![SystemApi::Sca];
        let mut fk = key(ApiKeyType::Feed);
        fk.feed = Some("pypi".into());
        fk.package_permissions = vec![View, Add];
        let mut gk = key(ApiKeyType::Feed);
        gk.feed_group = Some("public".into());
        gk.package_permissions = vec![Promote];
        let mut personal = key(ApiKeyType::Personal);
        personal.user = Some(user("alice", &["Developers"]));
        let mut orphan = key(ApiKeyType::Personal);
        orphan.user = None;
        let [full, feeds, sca, fk, gk, personal, orphan] =
            [full, feeds, sca, fk, gk, personal, orphan].map(|k| Principal::Key(k.into()));
        #[rustfmt::skip]
        let table: &[(&Principal, Need, bool)] = &[
            (&full, feed("x", Delete), true),
            (&full, Need::Administer, true),
            (&full, Need::SystemApi(SystemApi::SbomUpload), true),
            (&feeds, feed("x", Delete), true),
            (&feeds, Need::SystemApi(SystemApi::Feeds), true),
            (&feeds, Need::SystemApi(SystemApi::Sca), false),
            (&feeds, Need::Administer, false),
            (&sca, feed("x", View), false),
            (&sca, Need::SystemApi(SystemApi::Sca), true),
            (&sca, Need::AnyValid, true),
            (&fk, feed("pypi", View), true),
            (&fk, feed("PyPI", Add), true),
            (&fk, feed("pypi", Delete), false),
            (&fk, feed("npm", View), false),
            (&fk, Need::Feed { feed: None, group: Some("pypi"), permission: View }, false),
            (&fk, Need::SystemApi(SystemApi::Feeds), false),
            (&fk, Need::Administer, false),
            (&fk, Need::AnyValid, true),
            (&gk, in_group("any", "public", Promote), true),
            (&gk, in_group("any", "public", View), false),
            (&gk, feed("public", Promote), false),
            (&personal, feed("x", View), true),
            (&personal, feed("npm-internal", Add), true),
            (&personal, feed("x", Add), false),
            (&personal, Need::Administer, false),
            (&orphan, Need::AnyValid, false),
            (&orphan, feed("x", View), false),
        ];
        for (i, (who, need, expected)) in table.iter().enumerate() {
            assert_eq!(allows(&m, Some(who), *need), *expected, "row {i}: {need:?}");
        }
    }

    #[test]
    fn administrators_are_who_hold_administer_globally() {
        use Subject::{Group, User as U};
        let m = standard();
        assert!(is_admin(&m, &user("x", &["ADMINISTRATORS"])));
        assert!(!is_admin(&m, &user("x", &["Developers"])));
        let scoped = SecurityModel::new(vec![perm(
            1,
            U("x".into()),
            Task::Administer,
            Scope::Feed("f".into()),
            false,
        )]);
        assert!(!is_admin(&scoped, &user("x", &[])));
        let denied = SecurityModel::new(vec![
            perm(
                1,
                Group("Administrators".into()),
                Task::Administer,
                Scope::Global,
                false,
            ),
            perm(2, U("x".into()), Task::Administer, Scope::Global, true),
        ]);
        assert!(!is_admin(&denied, &user("x", &["Administrators"])));
        assert!(is_admin(&denied, &user("y", &["Administrators"])));
        let feed_deny = SecurityModel::new(vec![
            perm(
                1,
                Group("Administrators".into()),
                Task::Administer,
                Scope::Global,
                false,
            ),
            perm(
                2,
                U("x".into()),
                Task::Administer,
                Scope::Feed("f".into()),
                true,
            ),
        ]);
        assert!(is_admin(&feed_deny, &user("x", &["Administrators"])));
        assert!(!allows(
            &feed_deny,
            Some(&Principal::User(user("x", &["Administrators"]))),
            feed("f", View)
        ));
    }

    fn arb_permission() -> impl Strategy<Value = Permission> {
        let subject = prop_oneof![
            prop::sample::select(vec!["u", "Anonymous"]).prop_map(|n| Subject::User(n.into())),
            prop::sample::select(vec!["g1", "G2"]).prop_map(|n| Subject::Group(n.into())),
        ];
        let scope = prop_oneof![
            Just(Scope::Global),
            prop::sample::select(vec!["f", "other"]).prop_map(|f| Scope::Feed(f.into())),
            prop::sample::select(vec!["grp", "x"]).prop_map(|g| Scope::FeedGroup(g.into())),
        ];
        (
            subject,
            prop::sample::select(Task::ALL.to_vec()),
            scope,
            any::<bool>(),
        )
            .prop_map(|(subject, task, scope, deny)| perm(0, subject, task, scope, deny))
    }

    fn arb_need() -> impl Strategy<Value = Need<'static>> {
        prop_oneof![
            Just(Need::Administer),
            Just(Need::SystemApi(SystemApi::Feeds)),
            (
                prop::sample::select(vec![Some("f"), Some("F"), Some("z"), None]),
                prop::sample::select(vec![Some("grp"), None]),
                prop::sample::select(vec![View, Add, Promote, Delete]),
            )
                .prop_map(|(feed, group, permission)| Need::Feed {
                    feed,
                    group,
                    permission
                }),
        ]
    }

    fn model(mut ps: Vec<Permission>) -> SecurityModel {
        for (i, p) in ps.iter_mut().enumerate() {
            p.id = i as i64 + 1;
        }
        SecurityModel::new(ps)
    }

    fn principals() -> Vec<Option<Principal>> {
        vec![
            None,
            Some(Principal::User(user("u", &[]))),
            Some(Principal::User(user("U", &["g1"]))),
            Some(Principal::User(user("v", &["g1", "g2"]))),
        ]
    }

    proptest! {
        #[test]
        fn a_covering_deny_always_wins(mut ps in prop::collection::vec(arb_permission(), 0..12), need in arb_need(), extra in arb_permission()) {
            let mut deny = extra;
            deny.deny = true;
            ps.push(deny.clone());
            let m = model(ps);
            let p = m.permissions().last().cloned();
            for who in principals() {
                let affected = match (&who, &deny.subject) {
                    (None, Subject::User(n)) => n == "Anonymous",
                    (Some(Principal::User(u)), Subject::User(n)) => same_name(&u.name, n),
                    (Some(Principal::User(u)), Subject::Group(g)) => u.groups.iter().any(|x| same_name(x, g)),
                    _ => false,
                };
                if affected && p.as_ref().is_some_and(|p| covers(p, need)) {
                    prop_assert!(!allows(&m, who.as_ref(), need));
                }
            }
        }

        #[test]
        fn adding_a_grant_never_removes_access(ps in prop::collection::vec(arb_permission(), 0..12), need in arb_need(), extra in arb_permission()) {
            let before = model(ps.clone());
            let mut grant = extra;
            grant.deny = false;
            let mut more = ps;
            more.push(grant);
            let after = model(more);
            for who in principals() {
                if allows(&before, who.as_ref(), need) {
                    prop_assert!(allows(&after, who.as_ref(), need));
                }
            }
        }

        #[test]
        fn adding_a_deny_never_adds_access(ps in prop::collection::vec(arb_permission(), 0..12), need in arb_need(), extra in arb_permission()) {
            let before = model(ps.clone());
            let mut deny = extra;
            deny.deny = true;
            let mut more = ps;
            more.push(deny);
            let after = model(more);
            for who in principals() {
                if allows(&after, who.as_ref(), need) {
                    prop_assert!(allows(&before, who.as_ref(), need));
                }
            }
        }

        #[test]
        fn keys_that_read_no_permissions_decide_alike_on_any_model(ps in prop::collection::vec(arb_permission(), 0..12), need in arb_need(), ty in prop::sample::select(vec![ApiKeyType::System, ApiKeyType::Feed, ApiKeyType::Other]), apis in prop::sample::subsequence(SystemApi::ALL.to_vec(), 0..=SystemApi::ALL.len())) {
            let mut k = key(ty);
            k.system_apis = apis;
            k.feed = Some("f".into());
            k.package_permissions = vec![View, Add];
            let who = Principal::Key(k.into());
            prop_assert!(!reads_permissions(Some(&who)));
            prop_assert_eq!(allows(&model(ps), Some(&who), need), allows(&SecurityModel::default(), Some(&who), need));
        }

        #[test]
        fn order_of_permissions_does_not_matter(ps in prop::collection::vec(arb_permission(), 0..12), need in arb_need()) {
            let forward = model(ps.clone());
            let mut rev = ps;
            rev.reverse();
            let backward = model(rev);
            for who in principals() {
                prop_assert_eq!(allows(&forward, who.as_ref(), need), allows(&backward, who.as_ref(), need));
            }
        }
    }
}
