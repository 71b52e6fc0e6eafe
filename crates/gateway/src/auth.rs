//! Who may call the gateway: API keys that map to tenants, and the admin
//! token.
//!
//! The `auth:` section names where the secrets are (an environment
//! variable, a keys file); [`load`] reads them once at start — the IO half of
//! config validation, so a missing variable or a malformed line is a config
//! error with its key path — and keeps only their SHA-256 digests. A
//! credential is checked by hashing it and looking the digest up: the
//! secrets themselves are never stored, compared or logged, and timing can
//! only tell an attacker about digests of strings they chose. The admin
//! digest is compared in constant time all the same.
//!
//! Without an `auth:` section the gateway is open and a request's
//! [`Tenant`] is derived from its credential ([`Tenant::from_credential`]),
//! as before API keys existed. The HTTP side (the `Authorization` header,
//! which paths need what, the error bodies) is `http::guard`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, header};
use routemesh_common::Config;
use routemesh_common::config::{AuthConfig, ConfigError, ConfigErrors};
use sha2::{Digest as _, Sha256};
use xxhash_rust::xxh3::xxh3_64;

/// The tenant of requests that carry no credential (open gateway).
pub const ANONYMOUS: &str = "anonymous";
/// Prefix of the tenants the open gateway derives from credentials.
const DERIVED_PREFIX: &str = "key-";
/// Shortest key or admin token accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest tenant name (it is a cache scope, a log field and a label).
const MAX_TENANT_LEN: usize = 64;

/// The SHA-256 digest of a secret.
type Digest = [u8; 32];

fn digest(secret: &str) -> Digest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whose request this is: the cache scopes answers by it, logs carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(Arc<str>);

impl Tenant {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant of an open gateway's request: a hash of its credential
    /// (the whole `Authorization` value), so clients with different keys
    /// never share answers, or [`ANONYMOUS`] without one.
    /// [`Self::from_credential`] of what a request sends: `Authorization`,
    /// or failing that `x-api-key`.
    pub fn of_open_request(headers: &HeaderMap) -> Self {
        let sent = headers
            .get(header::AUTHORIZATION)
            .or_else(|| headers.get("x-api-key"));
        Self::from_credential(sent.map(|v| v.as_bytes()))
    }

    pub fn from_credential(authorization: Option<&[u8]>) -> Self {
        match authorization {
            Some(v) => Self(format!("{DERIVED_PREFIX}{:016x}", xxh3_64(v)).into()),
            None => Self(ANONYMOUS.into()),
        }
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "you didn't provide an API key: send it in the Authorization header \
         (Authorization: Bearer YOUR_KEY)"
    )]
    MissingKey,
    #[error("incorrect API key provided")]
    UnknownKey,
    #[error(
        "this endpoint needs the admin token: send it in the Authorization header \
         (Authorization: Bearer ADMIN_TOKEN)"
    )]
    MissingAdminToken,
    #[error("incorrect admin token")]
    WrongAdminToken,
    #[error(
        "the admin endpoints are disabled: no admin token is configured (set \
         `auth.admin_token_env` to an environment variable holding one)"
    )]
    AdminDisabled,
}

impl Denied {
    /// For metrics: bounded.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingKey | Self::MissingAdminToken => "missing",
            Self::UnknownKey | Self::WrongAdminToken => "invalid",
            Self::AdminDisabled => "disabled",
        }
    }

    /// Whether an admin endpoint refused it (403) rather than the API (401).
    pub fn is_admin(self) -> bool {
        !matches!(self, Self::MissingKey | Self::UnknownKey)
    }
}

/// The key table and the admin token, as digests.
pub struct Auth {
    keys: HashMap<Digest, Tenant>,
    admin: Option<Digest>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Digests are not secrets, but there is nothing to learn from them.
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("admin", &self.admin.is_some())
            .finish()
    }
}

impl Auth {
    /// The tenant an API key belongs to.
    pub fn tenant(&self, key: Option<&str>) -> Result<&Tenant, Denied> {
        let key = key.ok_or(Denied::MissingKey)?;
        self.keys.get(&digest(key)).ok_or(Denied::UnknownKey)
    }

    /// Whether `token` is the admin token.
    pub fn admin(&self, token: Option<&str>) -> Result<(), Denied> {
        let expected = self.admin.as_ref().ok_or(Denied::AdminDisabled)?;
        let token = token.ok_or(Denied::MissingAdminToken)?;
        let diff = digest(token)
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(Denied::WrongAdminToken)
        }
    }

    /// Tenants with at least one key, sorted.
    pub fn tenants(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self.keys.values().map(Tenant::as_str).collect();
        t.sort_unstable();
        t.dedup();
        t
    }
}

/// Reads the secrets the `auth:` section names (environment, keys file);
/// `None` without the section. Every problem is reported, each with its key
/// path, never with a secret in it.
pub fn load(config: &Config) -> Result<Option<Arc<Auth>>, ConfigErrors> {
    let Some(section) = &config.auth else {
        return Ok(None);
    };
    let env = |name: &str| std::env::var(name).ok();
    build(section, env, |p| std::fs::read_to_string(p)).map(|a| Some(Arc::new(a)))
}

/// [`load`] with its IO passed in.
fn build(
    section: &AuthConfig,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Auth, ConfigErrors> {
    let mut errors = Vec::new();
    let mut pairs: Vec<(&'static str, String, Entry)> = Vec::new();
    if let Some(var) = &section.keys_env {
        let path = "auth.keys_env";
        match env(var) {
            None => push(
                &mut errors,
                path,
                format!("the environment variable `{var}` is not set"),
            ),
            Some(text) => match parse_env(&text) {
                Ok(entries) => pairs.extend(
                    entries
                        .into_iter()
                        .map(|(i, e)| (path, format!("`{var}` entry {i}"), e)),
                ),
                Err(errs) => {
                    for (i, m) in errs {
                        push(&mut errors, path, format!("`{var}` entry {i}: {m}"));
                    }
                }
            },
        }
    }
    if let Some(file) = &section.keys_file {
        let path = "auth.keys_file";
        let name = file.display();
        match read(file) {
            Err(e) => push(&mut errors, path, format!("cannot read {name}: {e}")),
            Ok(text) => match parse_file(&text) {
                Ok(entries) => pairs.extend(
                    entries
                        .into_iter()
                        .map(|(line, e)| (path, format!("{name} line {line}"), e)),
                ),
                Err(errs) => {
                    for (line, m) in errs {
                        push(&mut errors, path, format!("{name} line {line}: {m}"));
                    }
                }
            },
        }
    }
    let mut keys: HashMap<Digest, Tenant> = HashMap::new();
    for (path, at, entry) in pairs {
        let tenant = Tenant(entry.tenant.into());
        match keys.get(&entry.digest) {
            Some(t) if *t != tenant => push(
                &mut errors,
                path,
                format!("{at}: this key also belongs to tenant `{t}`; a key names one tenant"),
            ),
            _ => {
                keys.insert(entry.digest, tenant);
            }
        }
    }
    let sources = section.keys_env.is_some() || section.keys_file.is_some();
    if keys.is_empty() && errors.is_empty() && sources {
        let path = if section.keys_env.is_some() {
            "auth.keys_env"
        } else {
            "auth.keys_file"
        };
        push(
            &mut errors,
            path,
            "holds no keys; every API request would be refused".into(),
        );
    }
    let mut admin = None;
    if let Some(var) = &section.admin_token_env {
        let path = "auth.admin_token_env";
        match env(var) {
            None => push(
                &mut errors,
                path,
                format!("the environment variable `{var}` is not set"),
            ),
            Some(token) => match check_secret(token.trim()) {
                Err(m) => push(&mut errors, path, format!("`{var}`: {m}")),
                Ok(()) => {
                    let d = digest(token.trim());
                    if keys.contains_key(&d) {
                        push(
                            &mut errors,
                            path,
                            format!("`{var}` is also an API key; use a token of its own"),
                        );
                    }
                    admin = Some(d);
                }
            },
        }
    }
    if errors.is_empty() {
        Ok(Auth { keys, admin })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn push(errors: &mut Vec<ConfigError>, path: &str, message: String) {
    errors.push(ConfigError {
        path: path.to_owned(),
        message,
    });
}

/// Entries with their position (entry number or line), or every bad one
/// with its position and what is wrong.
type Parsed = Result<Vec<(usize, Entry)>, Vec<(usize, String)>>;

/// One key of the table, already hashed.
struct Entry {
    tenant: String,
    digest: Digest,
}

/// `tenant:key,tenant:key` → entries numbered from 1, or every bad one.
fn parse_env(text: &str) -> Parsed {
    let items = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, item)| {
            let entry = match item.split_once(':') {
                Some((tenant, key)) => entry(tenant.trim(), key.trim()),
                None => Err("expected `TENANT:KEY`".to_owned()),
            };
            (i + 1, entry)
        });
    collect(items)
}

/// Lines of `tenant key` (`#` comment lines, blank lines skipped) → entries
/// with their line numbers, or every bad line.
fn parse_file(text: &str) -> Parsed {
    let items = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let entry = match fields.as_slice() {
                [tenant, key] => entry(tenant, key),
                _ => Err("expected `TENANT KEY`".to_owned()),
            };
            (n, entry)
        });
    collect(items)
}

fn collect(items: impl Iterator<Item = (usize, Result<Entry, String>)>) -> Parsed {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (at, item) in items {
        match item {
            Ok(e) => ok.push((at, e)),
            Err(m) => bad.push((at, m)),
        }
    }
    if bad.is_empty() { Ok(ok) } else { Err(bad) }
}

/// Checks a tenant name and a key; the error never quotes the key.
fn entry(tenant: &str, key: &str) -> Result<Entry, String> {
    check_tenant(tenant)?;
    check_secret(key).map_err(|m| format!("tenant `{tenant}`: {m}"))?;
    Ok(Entry {
        tenant: tenant.to_owned(),
        digest: digest(key),
    })
}

fn check_tenant(tenant: &str) -> Result<(), String> {
    let valid = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(format!(
            "tenant `{}`: use 1 to {MAX_TENANT_LEN} letters, digits, `.`, `-` and `_`",
            tenant.escape_debug()
        ));
    }
    if tenant == ANONYMOUS || tenant.starts_with(DERIVED_PREFIX) {
        return Err(format!(
            "tenant `{tenant}`: `{ANONYMOUS}` and names starting with `{DERIVED_PREFIX}` are \
             the open gateway's; choose another"
        ));
    }
    Ok(())
}

/// A key or token: long enough, and sendable as a bearer token.
fn check_secret(secret: &str) -> Result<(), String> {
    if !secret.chars().all(|c| c.is_ascii_graphic() && c != ',') {
        return Err("a key uses visible ASCII characters, no spaces or commas".into());
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "a key needs at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 24`)"
        ));
    }
    Ok(())
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive);
/// `None` when absent or not a bearer credential.
/// The API key a request carries: `Authorization: Bearer KEY` (OpenAI's
/// clients) or, failing that, `x-api-key: KEY` (Anthropic's). Neither is
/// forwarded upstream.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        let key = headers.get("x-api-key")?.to_str().ok()?.trim();
        (!key.is_empty()).then_some(key)
    })
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn an_x_api_key_is_a_credential_when_no_bearer_is_sent() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_static(" sk-ant "));
        assert_eq!(credential(&h), Some("sk-ant"));
        h.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer sk-openai"),
        );
        assert_eq!(credential(&h), Some("sk-openai"), "the bearer wins");
        assert_eq!(credential(&HeaderMap::new()), None);
    }

    #[test]
    fn bearer_tokens_are_read() {
        let of = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                http::HeaderValue::from_str(v).expect("header"),
            );
            bearer(&h).map(str::to_owned)
        };
        assert_eq!(of("Bearer abc"), Some("abc".into()));
        assert_eq!(of("bearer   abc "), Some("abc".into()));
        assert_eq!(of("Basic abc"), None);
        assert_eq!(of("Bearer "), None);
        assert_eq!(of("abc"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    const KEY_A: &str = "acme-0123456789abcdef";
    const KEY_A2: &str = "acme-second-key-0000";
    const KEY_G: &str = "globex-0123456789abcd";
    const ADMIN: &str = "admin-0123456789abcdef";

    fn section(env: bool, file: bool, admin: bool) -> AuthConfig {
        AuthConfig {
            keys_env: env.then(|| "KEYS".to_owned()),
            keys_file: file.then(|| PathBuf::from("/etc/rm/keys")),
            admin_token_env: admin.then(|| "ADMIN".to_owned()),
        }
    }

    /// Builds with `vars` as the environment and `file` (if any) as the
    /// keys file; errors as `path: message` lines.
    fn check(
        section: &AuthConfig,
        vars: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<Auth, Vec<String>> {
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let read = |_: &Path| {
            file.map(str::to_owned)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"))
        };
        build(section, env, read).map_err(|ConfigErrors(errs)| {
            errs.into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect()
        })
    }

    #[test]
    fn keys_from_env_and_file_map_to_their_tenants() {
        let env = format!(" acme:{KEY_A} , globex:{KEY_G},");
        let file = format!("# tenant key\n\nacme   {KEY_A2}\n  acme {KEY_A}\n");
        let auth = check(
            &section(true, true, true),
            &[("KEYS", &env), ("ADMIN", ADMIN)],
            Some(&file),
        )
        .expect("valid");
        let tenant = |k| auth.tenant(Some(k)).map(Tenant::as_str);
        assert_eq!(tenant(KEY_A), Ok("acme"));
        assert_eq!(tenant(KEY_A2), Ok("acme"));
        assert_eq!(tenant(KEY_G), Ok("globex"));
        assert_eq!(tenant("acme-0123456789abcdeX"), Err(Denied::UnknownKey));
        assert_eq!(auth.tenant(None), Err(Denied::MissingKey));
        assert_eq!(auth.tenants(), ["acme", "globex"]);
        assert_eq!(auth.admin(Some(ADMIN)), Ok(()));
        assert_eq!(auth.admin(Some(KEY_A)), Err(Denied::WrongAdminToken));
        assert_eq!(auth.admin(None), Err(Denied::MissingAdminToken));
    }

    #[test]
    fn only_digests_are_kept() {
        let auth = check(
            &section(true, false, true),
            &[("KEYS", &format!("acme:{KEY_A}")), ("ADMIN", ADMIN)],
            None,
        )
        .expect("valid");
        let shown = format!("{auth:?}");
        assert!(!shown.contains(KEY_A) && !shown.contains(ADMIN), "{shown}");
        assert_eq!(auth.keys.keys().next(), Some(&digest(KEY_A)));
    }

    #[test]
    fn without_an_admin_token_the_admin_endpoints_are_disabled() {
        let auth = check(
            &section(true, false, false),
            &[("KEYS", &format!("acme:{KEY_A}"))],
            None,
        )
        .expect("valid");
        assert_eq!(auth.admin(Some(ADMIN)), Err(Denied::AdminDisabled));
        assert!(Denied::AdminDisabled.is_admin() && !Denied::UnknownKey.is_admin());
    }

    #[test]
    fn missing_variables_and_files_name_their_keys() {
        let errs = check(&section(true, true, true), &[], None)
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("auth.keys_env: the environment variable `KEYS` is not set"));
        assert!(errs[1].starts_with("auth.keys_file: cannot read /etc/rm/keys"));
        assert!(errs[2].starts_with("auth.admin_token_env: the environment variable `ADMIN`"));
    }

    #[test]
    fn bad_entries_are_all_reported_by_line_without_the_secret() {
        let file = format!(
            "acme {KEY_A}\nacme\nacme short\nbad/name {KEY_G}\nanonymous {KEY_G}\nx {KEY_A} extra\n"
        );
        let errs = check(&section(false, true, false), &[], Some(&file))
            .err()
            .unwrap_or_default();
        let lines: Vec<&str> = errs.iter().map(String::as_str).collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        for (i, line) in [2, 3, 4, 5, 6].iter().enumerate() {
            assert!(
                lines[i].starts_with(&format!("auth.keys_file: /etc/rm/keys line {line}: ")),
                "{lines:?}"
            );
        }
        assert!(lines[1].contains("at least 16"), "{lines:?}");
        assert!(lines[2].contains("`bad/name`"), "{lines:?}");
        assert!(lines[3].contains("open gateway"), "{lines:?}");
        assert!(
            errs.iter()
                .all(|e| !e.contains(KEY_A) && !e.contains(KEY_G) && !e.contains("short"))
        );

        let errs = check(
            &section(true, false, false),
            &[("KEYS", &format!("acme:{KEY_A},globex{KEY_G}"))],
            None,
        )
        .err()
        .unwrap_or_default();
        assert_eq!(
            errs,
            ["auth.keys_env: `KEYS` entry 2: expected `TENANT:KEY`"]
        );
    }

    #[test]
    fn a_key_names_one_tenant_and_the_admin_token_is_no_key() {
        let env = format!("acme:{KEY_A},globex:{KEY_A}");
        let errs = check(
            &section(true, false, true),
            &[("KEYS", &env), ("ADMIN", KEY_A)],
            None,
        )
        .err()
        .unwrap_or_default();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "auth.keys_env: `KEYS` entry 2: this key also belongs to tenant `acme`"
            )
        );
        assert!(errs[1].starts_with("auth.admin_token_env: `ADMIN` is also an API key"));
    }

    #[test]
    fn an_empty_key_table_is_an_error() {
        let errs = check(&section(false, true, false), &[], Some("# nobody yet\n"))
            .err()
            .unwrap_or_default();
        assert_eq!(
            errs,
            ["auth.keys_file: holds no keys; every API request would be refused"]
        );
    }

    #[test]
    fn open_gateway_tenants_come_from_the_credential() {
        assert_eq!(Tenant::from_credential(None).as_str(), ANONYMOUS);
        let one = Tenant::from_credential(Some(b"Bearer one"));
        let two = Tenant::from_credential(Some(b"Bearer two"));
        assert_ne!(one, two);
        assert!(one.as_str().starts_with(DERIVED_PREFIX));
        assert!(
            !one.as_str().contains("one"),
            "the key itself is never kept"
        );
        assert!(
            check_tenant(one.as_str()).is_err(),
            "configured tenants cannot collide"
        );
    }
}
