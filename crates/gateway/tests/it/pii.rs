//! Personal data: redacted before it goes upstream, never logged, or the
//! request blocked, as the decision says.

use anyhow::Result;
use routemesh_test_support::fake::FakeConfig;
use routemesh_test_support::gateway::{Fake, Fakes, Gateway, chat, header};
use serde_json::Value;

const EMAIL: &str = "jane.roe@example.com";
const CARD: &str = "4111 1111 1111 1111";

/// Added above the example config's own `private` decision (which
/// redacts every kind and routes to the chat model).
const PII_DECISIONS: &str = "decisions:
  - name: no_ssn
    priority: 200
    when: { pii: [us_ssn] }
    block: Social security numbers are not accepted here.
";

/// The example config plus a blocking decision, the chat upstream echoing.
async fn setup() -> Result<(Fakes, Fake, Gateway)> {
    let fakes = Fakes::start().await?;
    let echo = Fake::start(FakeConfig {
        name: "echo".into(),
        served_models: vec!["llama-3.2-1b".into()],
        echo: true,
        ..FakeConfig::default()
    })
    .await?;
    let config = fakes
        .example_config()?
        .replace(&fakes.chat.base, &echo.base)
        .replace("decisions:\n", PII_DECISIONS);
    let gw = Gateway::start(&config).await?;
    Ok((fakes, echo, gw))
}

#[tokio::test]
async fn email_and_card_reach_the_upstream_redacted_and_are_never_logged() -> Result<()> {
    let (_fakes, _echo, gw) = setup().await?;
    let prompt = format!("Please email {EMAIL} the receipt for card {CARD}, thanks!");
    let resp = gw
        .post("/v1/chat/completions", chat("auto", &prompt))
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-decision"), "private");
    assert_eq!(header(&resp, "x-routemesh-pii-redacted"), "2");
    let body: Value = resp.json().await?;
    let echoed = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        echoed,
        "Please email [EMAIL] the receipt for card [CREDIT_CARD], thanks!"
    );

    let logs = gw.logs();
    assert!(!logs.is_empty(), "the gateway logged at debug level");
    assert!(
        !logs.contains(EMAIL) && !logs.contains(CARD),
        "personal data in the logs:\n{logs}"
    );
    Ok(())
}

#[tokio::test]
async fn names_and_addresses_found_by_the_pii_head_reach_the_upstream_redacted() -> Result<()> {
    let (_fakes, _echo, gw) = setup().await?;
    let (name, street) = ("Maria Gonzalez", "1420 Oak Street");
    let prompt =
        format!("Please ship the order to {name} at {street}, Springfield, paid with card {CARD}.");
    // the dry run: typed spans at the values' byte offsets, never the values
    let v: Value = gw
        .post("/v1/route", chat("auto", &prompt))
        .await?
        .json()
        .await?;
    let spans = v["signals"]["pii"].as_array().cloned().unwrap_or_default();
    let span_of = |kind: &str| {
        spans
            .iter()
            .find(|s| s["type"] == kind)
            .and_then(|s| Some((s["start"].as_u64()? as usize, s["end"].as_u64()? as usize)))
    };
    let person = span_of("person").ok_or_else(|| anyhow::anyhow!("no person span: {v}"))?;
    assert_eq!(&prompt[person.0..person.1], name, "{v}");
    let address =
        span_of("street_address").ok_or_else(|| anyhow::anyhow!("no address span: {v}"))?;
    assert!(
        prompt[address.0..address.1].contains(street),
        "the address span covers the street: {:?}",
        &prompt[address.0..address.1]
    );
    assert!(
        !v.to_string().contains(name),
        "the dry run does not echo the value"
    );

    let resp = gw
        .post("/v1/chat/completions", chat("auto", &prompt))
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-decision"), "private");
    let body: Value = resp.json().await?;
    let echoed = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        echoed.contains("[PERSON]") && echoed.contains("[ADDRESS]"),
        "{echoed}"
    );
    assert!(echoed.contains("[CREDIT_CARD]"), "{echoed}");
    assert!(
        !echoed.contains("Gonzalez") && !echoed.contains("Oak Street"),
        "a name or street went upstream: {echoed}"
    );
    Ok(())
}

#[tokio::test]
async fn the_dry_run_shows_pii_spans_and_the_action() -> Result<()> {
    let (_fakes, echo, gw) = setup().await?;
    let prompt = format!("card {CARD}");
    let v: Value = gw
        .post("/v1/route", chat("auto", &prompt))
        .await?
        .json()
        .await?;
    assert_eq!(v["decision"]["name"], "private");
    assert_eq!(v["action"]["type"], "route");
    assert_eq!(
        v["action"]["redact_pii"].as_array().map(Vec::len),
        Some(routemesh_common::PiiKind::ALL.len()),
        "redact_pii: true means every kind"
    );
    let span = &v["signals"]["pii"][0];
    assert_eq!(span["type"], "credit_card");
    assert_eq!(
        (span["start"].as_u64(), span["end"].as_u64()),
        (Some(5), Some(5 + CARD.len() as u64))
    );
    assert!(
        !v.to_string().contains(CARD),
        "the dry run does not echo the value"
    );
    assert_eq!(echo.requests().await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_blocking_decision_refuses_with_its_message_and_forwards_nothing() -> Result<()> {
    let (fakes, echo, gw) = setup().await?;
    let resp = gw
        .post(
            "/v1/chat/completions",
            chat("auto", "my SSN is 123-45-6789, what now?"),
        )
        .await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "x-routemesh-decision"), "no_ssn");
    assert_eq!(
        header(&resp, "x-routemesh-model"),
        "",
        "no model for a blocked request"
    );
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "content_blocked");
    assert_eq!(
        body["error"]["message"],
        "Social security numbers are not accepted here."
    );
    let forwarded =
        echo.requests().await? + fakes.math.requests().await? + fakes.code.requests().await?;
    assert_eq!(forwarded, 0);
    Ok(())
}
