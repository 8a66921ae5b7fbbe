//! The shipped examples are real: the TOML file is one certsync accepts.

use crate::support::bin::*;

#[test]
fn the_example_config_is_accepted() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/certsync.toml");
    let tmp = tempfile::tempdir().unwrap();
    // Point it at the fixture and a temporary out dir, leave the rest as shipped.
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "/var/lib/traefik/acme.json",
            fixture("acme.json").to_str().unwrap(),
        )
        .replace(
            "/etc/coturn/certs",
            tmp.path().join("out").to_str().unwrap(),
        )
        .replace("turn.example.com", "turn.example.test")
        .replace("certsync:turnserver", "nobody:nogroup");
    let config = tmp.path().join("certsync.toml");
    std::fs::write(&config, text).unwrap();
    // --dry-run: the systemd unit it names does not exist here.
    certsync(&["--once", "--dry-run", "--config", config.to_str().unwrap()])
        .expect_code(0)
        .expect_says(&["would write fullchain.pem, privkey.pem", "would reload"]);
}
