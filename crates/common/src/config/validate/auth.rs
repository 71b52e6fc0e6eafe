//! Validating the `auth:` section and `server.max_prompt_chars` (part of
//! phase two).
//!
//! Only names and paths are checked here: the keys and the admin token are
//! secrets the gateway reads at start (environment, keys file), where a
//! missing variable or a malformed file is reported with the same key paths.

use std::path::Path;

use super::Validator;
use crate::config::AuthConfig;
use crate::config::raw::RawAuth;

impl Validator {
    /// `auth:`; absent means no authentication (today's open gateway).
    pub(super) fn auth(&mut self, raw: Option<RawAuth>, base_dir: &Path) -> Option<AuthConfig> {
        let raw = raw?;
        if let Some(name) = &raw.keys_env {
            self.env_name(name, "auth.keys_env");
        }
        if let Some(name) = &raw.admin_token_env {
            self.env_name(name, "auth.admin_token_env");
        }
        let file_given = raw.keys_file.is_some();
        let keys_file = match raw.keys_file {
            Some(f) if f.trim().is_empty() => {
                self.error(
                    "auth.keys_file",
                    "give a file of `tenant key` lines, or leave the key out".into(),
                );
                None
            }
            f => f.map(|f| base_dir.join(f)),
        };
        if raw.keys_env.is_none() && !file_given {
            self.error(
                "auth",
                "needs API keys: set `keys_env` (a variable holding `tenant:key,…`) or \
                 `keys_file` (a file of `tenant key` lines), or remove the section to leave \
                 the gateway open"
                    .into(),
            );
        }
        Some(AuthConfig {
            keys_env: raw.keys_env,
            keys_file,
            admin_token_env: raw.admin_token_env,
        })
    }

    /// `server.max_prompt_chars`: absent means no limit beyond the body's.
    pub(super) fn max_prompt_chars(&mut self, raw: Option<u64>) -> Option<usize> {
        let n = raw?;
        if n == 0 {
            self.error(
                "server.max_prompt_chars",
                "must be at least 1; leave the key out for no limit beyond max_body_bytes".into(),
            );
            return None;
        }
        Some(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// An environment variable name: letters, digits and `_`, not starting
    /// with a digit.
    fn env_name(&mut self, name: &str, path: &str) {
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            self.error(
                path,
                format!("`{name}` is not an environment variable name"),
            );
        }
    }
}
