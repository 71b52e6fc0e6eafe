//! Unit tests of the `auth:` section and `server.max_prompt_chars`.

use std::path::Path;

use super::{BASE, errors, has, ok};
use crate::config::AuthConfig;

#[test]
fn without_an_auth_section_the_gateway_is_open() {
    let c = ok(BASE);
    assert_eq!(c.auth, None);
    assert_eq!(c.server.max_prompt_chars, None, "only the body limit");
}

#[test]
fn full_auth_section_is_read_with_the_file_relative_to_the_config() {
    let c = ok(&format!(
        "{BASE}auth:
  keys_env: ROUTEMESH_API_KEYS
  keys_file: secrets/keys
  admin_token_env: ROUTEMESH_ADMIN_TOKEN
"
    ));
    let expected = AuthConfig {
        keys_env: Some("ROUTEMESH_API_KEYS".into()),
        keys_file: Some(Path::new("/etc/rm/secrets/keys").to_path_buf()),
        admin_token_env: Some("ROUTEMESH_ADMIN_TOKEN".into()),
    };
    assert_eq!(c.auth, Some(expected));
    let abs = ok(&format!("{BASE}auth: {{ keys_file: /run/keys }}\n"));
    assert_eq!(
        abs.auth.and_then(|a| a.keys_file),
        Some(Path::new("/run/keys").to_path_buf())
    );
}

#[test]
fn auth_needs_a_source_of_keys() {
    let errs = errors(&format!(
        "{BASE}auth: {{ admin_token_env: ROUTEMESH_ADMIN_TOKEN }}\n"
    ));
    assert!(has(&errs, "auth"), "{errs:?}");
    assert!(errs[0].contains("keys_env"), "{errs:?}");
}

#[test]
fn bad_auth_keys_are_reported_together_with_their_paths() {
    let errs = errors(&format!(
        "{BASE}auth: {{ keys_env: 1KEYS, keys_file: \" \", admin_token_env: admin-token }}\n\
         server: {{ max_prompt_chars: 0 }}\n"
    ));
    for path in [
        "auth.keys_env",
        "auth.keys_file",
        "auth.admin_token_env",
        "server.max_prompt_chars",
    ] {
        assert!(has(&errs, path), "{path} missing from {errs:?}");
    }
    assert_eq!(errs.len(), 4, "{errs:?}");
}

#[test]
fn unknown_auth_keys_are_errors() {
    let errs = errors(&format!(
        "{BASE}auth: {{ keys_env: K, admin_token: secret }}\n"
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("auth") && e.contains("admin_token")),
        "{errs:?}"
    );
}

#[test]
fn max_prompt_chars_is_read() {
    let c = ok(&format!("{BASE}server: {{ max_prompt_chars: 20000 }}\n"));
    assert_eq!(c.server.max_prompt_chars, Some(20_000));
}
