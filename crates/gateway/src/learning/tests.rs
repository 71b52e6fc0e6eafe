//! [`Learning`] with `share: local`: the feedback window on paused time,
//! and what a learning store keeps across a restart (the request memory,
//! the outbox). The JetStream side is tested against a real nats-server
//! in the gateway's integration tests (`tests/it/learning.rs`).

use std::path::Path;
use std::time::Duration;

use routemesh_common::Config;
use routemesh_decision::store::LearnStore;

use super::*;

fn acme() -> Tenant {
    Tenant::from_credential(Some(b"Bearer acme"))
}

fn config(learning: &str) -> Config {
    let text = format!(
        r#"
encoder: {{ model_dir: m }}
upstreams: [ {{ name: up, base_url: "http://127.0.0.1:1" }} ]
models: [ {{ name: a, upstream: up }}, {{ name: b, upstream: up }} ]
signals: {{ keywords: [ {{ name: k, patterns: [x] }} ] }}
decisions: [ {{ name: learned, when: {{ keyword: k }}, models: [a, b], selection: thompson }} ]
default: {{ model: a }}
learning: {{ {learning} }}
"#
    );
    match routemesh_common::config::parse(&text, Path::new(".")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn stored(dir: &Path) -> Config {
    config(&format!("store: \"{}\"", dir.display()))
}

/// One life of a gateway's learning: its own runtime, dropped (with every
/// task holding the store) when `f` is done, as at exit.
fn life<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(f),
        Err(e) => panic!("a runtime: {e}"),
    }
}

async fn start(config: &Config) -> Arc<Learning> {
    match Learning::start(config).await {
        Ok(l) => l,
        Err(e) => panic!("local learning: {e}"),
    }
}

fn rewards(l: &Learning, model: &str) -> u64 {
    l.learner
        .snapshot()
        .iter()
        .find(|a| a.decision == "learned" && a.model == model)
        .map_or(0, |a| a.rewards)
}

/// `learning.remember.for` reaches the memory, which reads tokio's
/// clock: what the gateway test `feedback_expires_after_the_window`
/// pins through a process on the wall clock.
#[tokio::test(start_paused = true)]
async fn feedback_is_taken_within_the_window_and_refused_after_it() {
    let learning = start(&config("remember: { requests: 100, for: 300ms }")).await;
    learning.remember("early", &acme(), "learned", "a");
    learning.remember("late", &acme(), "learned", "b");
    tokio::time::advance(Duration::from_millis(300)).await;
    assert_eq!(
        learning
            .feedback("early", &acme(), 1.0)
            .await
            .map(|r| r.routed.model),
        Ok("a".to_owned()),
        "at the end of the window"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        learning.feedback("late", &acme(), 1.0).await,
        Err(FeedbackError::Unknown("late".into())),
        "past the window"
    );
}

#[tokio::test]
async fn local_feedback_is_applied_before_it_is_answered() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let learning = start(&stored(dir.path())).await;
    learning.remember("r", &acme(), "learned", "b");
    let accepted = learning.feedback("r", &acme(), 1.0).await?;
    assert_eq!(accepted.taken, Taken::Applied);
    assert_eq!(rewards(&learning, "b"), 1);
    assert_eq!(
        learning.describe()["outbox"]["events"],
        0,
        "delivered and deleted"
    );
    assert_eq!(
        learning.feedback("r", &acme(), 0.0).await,
        Err(FeedbackError::AlreadyRated("r".into()))
    );
    assert_eq!(rewards(&learning, "b"), 1);
    Ok(())
}

/// Regression (issue 16, 3): the request memory lived in memory only, so
/// feedback for a request answered before a restart was a 404. With a
/// learning store it is mirrored there: after a restart the requests are
/// known, a rated one stays rated, and ages go on with the wall clock.
#[test]
fn feedback_for_a_request_answered_before_a_restart_is_accepted()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = stored(dir.path());
    life(async {
        let learning = start(&config).await;
        for id in ["unrated", "rated", "old"] {
            learning.remember(id, &acme(), "learned", "a");
        }
        assert!(learning.feedback("rated", &acme(), 1.0).await.is_ok());
    });
    // Between the lives, make `old` two hours old (past `remember.for`'s
    // default of 1 h), as if routed long before the restart.
    {
        let requests = LearnStore::open(dir.path())?.tree(disk::TREE)?;
        let now = Clock::start().now();
        let two_hours_ago = format!(
            r#"{{"tenant":"{}","decision":"learned","model":"a","at":{},"rated":false}}"#,
            acme(),
            now - 2 * 3600 * 1000
        );
        requests.insert("old", two_hours_ago.as_bytes())?;
        requests.flush()?;
    }
    life(async {
        let learning = start(&config).await;
        assert_eq!(
            learning.describe()["memory"]["requests"],
            2,
            "old is forgotten"
        );
        assert_eq!(
            learning
                .feedback("unrated", &acme(), 1.0)
                .await
                .map(|a| a.routed.decision),
            Ok("learned".to_owned())
        );
        assert_eq!(
            learning.feedback("rated", &acme(), 1.0).await,
            Err(FeedbackError::AlreadyRated("rated".into()))
        );
        assert_eq!(
            learning.feedback("old", &acme(), 1.0).await,
            Err(FeedbackError::Unknown("old".into()))
        );
        let globex = Tenant::from_credential(Some(b"Bearer globex"));
        learning.remember("theirs", &globex, "learned", "a");
        assert_eq!(
            rewards(&learning, "a"),
            2,
            "one before the restart, one after"
        );
    });
    life(async {
        let learning = start(&config).await;
        assert_eq!(
            learning.feedback("theirs", &acme(), 1.0).await,
            Err(FeedbackError::Unknown("theirs".into())),
            "the tenant is remembered too"
        );
        let globex = Tenant::from_credential(Some(b"Bearer globex"));
        assert!(learning.feedback("theirs", &globex, 1.0).await.is_ok());
    });
    Ok(())
}

/// An event acknowledged but not yet applied when the gateway died is in
/// the outbox at the next start, and is applied then; one applied whose
/// entry was not yet deleted is not applied a second time.
#[test]
fn an_event_left_in_the_outbox_is_applied_once_after_a_restart()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = stored(dir.path());
    {
        let learner = routemesh_decision::Learner::open(&config, dir.path())?;
        let applied = OutcomeEvent::new("learned", "b", Some(1.0), "feedback");
        learner.apply(&applied)?;
        let pending = OutcomeEvent::new("learned", "b", Some(1.0), "feedback");
        let outbox = Outbox::on_disk(learner.store().ok_or("a store")?.tree(outbox::TREE)?, 10)?;
        outbox.push(&applied)?;
        outbox.push(&pending)?;
        outbox.flush()?;
    }
    life(async {
        let learning = start(&config).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while learning.describe()["outbox"]["events"] != 0 {
            assert!(tokio::time::Instant::now() < deadline, "never delivered");
            // Real: the delivery task writes to disk on blocking threads.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            rewards(&learning, "b"),
            2,
            "the pending one once, the other not again"
        );
    });
    Ok(())
}
