//! Rotating the installation secret keeps existing keys working.

use crate::both_backends;
use crate::common::{full_control, Backend, Options, TestServer, TEST_SECRET};

const NEW_SECRET: &str = "a-brand-new-installation-secret-0123456789";

both_backends!(keys_survive_a_rotation_through_the_environment);

fn keys_survive_a_rotation_through_the_environment(backend: Backend) {
    let mut s = TestServer::start(backend);
    let (used_id, used) = s.create_key(full_control());
    let (_, unused) = s.create_key(full_control());

    // Phase 1: new current secret, old one still accepted.
    s.options_mut().env = vec![
        ("LATCHKEY_SECRET".into(), NEW_SECRET.into()),
        ("LATCHKEY_PREVIOUS_SECRET".into(), TEST_SECRET.into()),
    ];
    s.restart();
    assert_eq!(
        s.list_keys(&used).status(),
        200,
        "old keys work during the rotation"
    );
    assert!(s.log().contains(&format!(
        "key re-keyed under the current installation secret key_id={used_id}"
    )));
    let (_, fresh) = s.create_key(full_control());

    // Phase 2: the previous secret is retired.
    s.options_mut().env = vec![("LATCHKEY_SECRET".into(), NEW_SECRET.into())];
    s.restart();
    assert_eq!(
        s.list_keys(&used).status(),
        200,
        "a key used during the rotation was re-keyed"
    );
    assert_eq!(s.list_keys(&fresh).status(), 200);
    assert_eq!(
        s.list_keys(&unused).status(),
        403,
        "a key unused while the previous secret was accepted depends on it (documented)"
    );
}

#[test]
fn rotate_secret_command_keeps_keys_working() {
    let options = Options {
        unset_env: vec!["LATCHKEY_SECRET".into()],
        ..Options::default()
    };
    let mut s = TestServer::start_with(Backend::Sqlite, options);
    let (_, key) = s.create_key(full_control());
    s.kill();
    let secret_before = std::fs::read_to_string(s.data_dir.join("secret")).unwrap();

    let rotate = || {
        std::process::Command::new(crate::common::latchkey_bin())
            .args(["rotate-secret", "--data-dir"])
            .arg(&s.data_dir)
            .env_remove("LATCHKEY_SECRET")
            .env_remove("LATCHKEY_DATA_DIR")
            .output()
            .unwrap()
    };
    let first = rotate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let previous = std::fs::read_to_string(s.data_dir.join("secret.previous")).unwrap();
    assert_eq!(previous, secret_before);
    let meta = std::fs::metadata(s.data_dir.join("secret")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    let second = rotate();
    assert!(
        !second.status.success(),
        "a second rotation would strand keys still under the oldest secret"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("secret.previous"));

    s.restart();
    assert_eq!(s.list_keys(&key).status(), 200);
    std::fs::remove_file(s.data_dir.join("secret.previous")).unwrap();
    s.restart();
    assert_eq!(
        s.list_keys(&key).status(),
        200,
        "the key was re-keyed on its first use"
    );
}
