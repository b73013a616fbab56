//! Forward auth's input: the forward URL's query (`Requirement::parse` and
//! `need`), the forwarded method and URI, the credential of the forwarded
//! headers (`auth::extract_forwarded_credential`), and the client address
//! from `X-Forwarded-For` behind `--trusted-proxies` (`http/client.rs`).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use http::HeaderValue;
use latchkey::auth::extract_forwarded_credential;
use latchkey::http::client::{Cidr, TrustedProxies};
use latchkey::http::{forwarded_query, permission_of, Requirement};
use latchkey::policy::Need;
use latchkey_fuzz::{check_credential, check_one_more, same, Request, EXTRA_KEY};
use libfuzzer_sys::fuzz_target;
use proget_api::SystemApi;

fuzz_target!(|data: &[u8]| {
    let req = Request::parse(data);
    let headers = &req.headers;
    let method = ["x-forwarded-method", "x-original-method"]
        .iter()
        .find_map(|n| headers.get(*n))
        .map_or(&b"GET"[..], HeaderValue::as_bytes);
    let default = permission_of(method);

    match Requirement::parse(req.query.as_deref()) {
        Ok(r) => {
            assert!(r.feed.as_deref().is_none_or(|f| !f.is_empty()));
            assert!(r.group.as_deref().is_none_or(|g| !g.is_empty()));
            // Written back as a query, it reads the same.
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(f) = &r.feed {
                query.append_pair("feed", f);
            }
            if let Some(g) = &r.group {
                query.append_pair("feedGroup", g);
            }
            if let Some(p) = r.permission {
                query.append_pair("permission", p.as_str());
            }
            if let Some(a) = r.system_api {
                query.append_pair("systemApi", a.as_str());
            }
            let query = query.finish();
            let again = Requirement::parse(Some(&query)).expect("a written requirement reads back");
            assert_eq!(format!("{again:?}"), format!("{r:?}"));
            match r.need(default) {
                Ok(Need::AnyValid) => {
                    assert!(r.feed.is_none() && r.group.is_none());
                    assert!(r.permission.is_none() && r.system_api.is_none());
                }
                Ok(Need::Feed {
                    feed,
                    group,
                    permission,
                }) => {
                    assert!(feed.is_some() || group.is_some());
                    assert_eq!(permission, r.permission.unwrap_or(default));
                    assert!(r.system_api.is_none());
                }
                Ok(Need::SystemApi(api)) => {
                    assert_ne!(api, SystemApi::FullControl);
                    assert!(r.feed.is_none() && r.group.is_none() && r.permission.is_none());
                }
                Ok(Need::Administer) => panic!("a forward URL cannot ask for Administer"),
                Err(e) => assert!(!e.is_empty()),
            }
        }
        // The message goes into a 500 body and the log: bounded, whatever the query.
        Err(e) => assert!(!e.is_empty() && e.len() < 1024, "{} bytes", e.len()),
    }

    let uri = ["x-forwarded-uri", "x-original-uri"]
        .iter()
        .find_map(|n| headers.get(*n))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let query = uri.as_deref().and_then(forwarded_query);
    if let (Some(u), Some(q)) = (&uri, query) {
        assert!(!q.contains('#'));
        assert!(u.contains(&format!("?{q}")));
    }
    let found = extract_forwarded_credential(headers, query);
    assert!(same(&found, &extract_forwarded_credential(headers, query)));
    if let Ok(Some(c)) = &found {
        check_credential(c);
    }
    let mut more = headers.clone();
    more.append("x-nuget-apikey", HeaderValue::from_static(EXTRA_KEY));
    check_one_more(&found, &extract_forwarded_credential(&more, query));
    let mut bearer = headers.clone();
    bearer.append(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {EXTRA_KEY}")).expect("ASCII"),
    );
    check_one_more(&found, &extract_forwarded_credential(&bearer, query));

    let mut networks = Vec::new();
    for text in req.pseudo("trusted") {
        if let Ok(net) = text.parse::<Cidr>() {
            assert_eq!(net.to_string().parse::<Cidr>(), Ok(net), "{text}");
            networks.push(net);
        }
    }
    let peer = req
        .pseudo("peer")
        .find_map(|p| p.parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let canonical = |a: IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        IpAddr::V4(_) => a,
    };
    let proxies = TrustedProxies::new(networks);
    let client = proxies.client(peer, headers);
    assert_eq!(client, canonical(client), "client addresses are canonical");
    assert_eq!(client, proxies.client(peer, headers));
    if !proxies.trusts(peer) || headers.get("x-forwarded-for").is_none() {
        assert_eq!(client, canonical(peer));
    }
    // No trusted proxies: the peer, whatever is forwarded.
    assert_eq!(
        TrustedProxies::default().client(peer, headers),
        canonical(peer)
    );
});
