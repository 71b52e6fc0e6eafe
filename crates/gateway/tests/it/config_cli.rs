//! The command line: `check-config`, and `serve` refusing bad setups before
//! binding anything.

use std::process::Command;

use anyhow::Result;
use routemesh_test_support::workspace;

fn routemesh(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_routemesh"))
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `routemesh check-config` on a config given as text: its exit code and
/// stderr.
pub(crate) fn check_config_text(text: &str) -> Result<(i32, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("routemesh.yaml");
    std::fs::write(&path, text)?;
    let (code, _, err) = routemesh(&["check-config", &path.display().to_string()])?;
    Ok((code, err))
}

#[test]
fn check_config_accepts_the_shipped_example() -> Result<()> {
    let path = workspace().join("config/example.yaml");
    let (code, out, err) = routemesh(&["check-config", &path.display().to_string()])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK (3 upstreams, 3 models"), "{out}");
    Ok(())
}

/// Issue 16, 4: timeouts that leave an upstream's retries no time were
/// accepted without a word.
#[test]
fn check_config_warns_when_retries_cannot_fit_in_the_total_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tight.yaml");
    std::fs::write(
        &path,
        "encoder: { model_dir: m }
upstreams: [ { name: slow, base_url: \"http://127.0.0.1:1\", timeouts: { first_byte: 2s, total: 5s }, retries: { attempts: 2 } } ]
models: [ { name: a, upstream: slow } ]
default: { model: a }
",
    )?;
    let (code, out, err) = routemesh(&["check-config", &path.display().to_string()])?;
    assert_eq!(code, 0, "a warning is not an error: {out}{err}");
    let warning = out
        .lines()
        .find(|l| l.starts_with("warning: upstreams[0] `slow`"))
        .unwrap_or_else(|| panic!("no warning about the retries: {out}"));
    assert!(warning.contains("timeouts.total (5s)"), "{warning}");
    Ok(())
}

#[test]
fn invalid_config_lists_every_error_with_its_key_and_exits_64() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "server: { listen: everywhere }\nencoder: { model_dir: m }\nmodels: [ { name: a, upstream: ghost } ]\ndefault: { model: b }\n",
    )?;
    let p = path.display().to_string();
    for args in [
        vec!["check-config", p.as_str()],
        vec!["serve", "--config", p.as_str()],
    ] {
        let (code, out, err) = routemesh(&args)?;
        assert_eq!(code, 64, "{args:?}: {out}{err}");
        for key in ["server.listen", "models[0].upstream", "default.model"] {
            assert!(err.contains(key), "{args:?} does not name {key}: {err}");
        }
        assert!(
            !out.contains("listening"),
            "nothing is bound for an invalid config"
        );
    }
    Ok(())
}

#[test]
fn missing_config_file_exits_64_and_missing_model_exits_66_with_a_hint() -> Result<()> {
    let (code, _, err) = routemesh(&["check-config", "/nonexistent/routemesh.yaml"])?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("/nonexistent/routemesh.yaml"), "{err}");

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.yaml");
    let text = routemesh_test_support::gateway::example_config_text()?.replace(
        &routemesh_test_support::model_dir().display().to_string(),
        "no-such-model-dir",
    );
    std::fs::write(&path, text)?;
    let (code, out, err) = routemesh(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        &path.display().to_string(),
    ])?;
    assert_eq!(code, 66, "{out}{err}");
    assert!(
        err.contains("scripts/fetch-model.sh"),
        "says how to fix it: {err}"
    );
    assert!(!out.contains("listening"));
    Ok(())
}
