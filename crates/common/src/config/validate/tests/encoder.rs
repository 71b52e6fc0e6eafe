//! Unit tests of the `encoder:` section: window and total token limits,
//! precision.

use super::{BASE, EXAMPLE, errors, has, ok};
use crate::config::{EncoderConfig, EncoderPrecision};

const ENCODER: &str = "encoder: { model_dir: models/m }";

fn encoder(keys: &str) -> EncoderConfig {
    let text = BASE.replace(
        ENCODER,
        &format!("encoder: {{ model_dir: models/m{keys} }}"),
    );
    match ok(&text).encoder {
        Some(e) => e,
        None => panic!("the embedded transport keeps its encoder"),
    }
}

fn encoder_errors(keys: &str) -> Vec<String> {
    errors(&BASE.replace(
        ENCODER,
        &format!("encoder: {{ model_dir: models/m{keys} }}"),
    ))
}

#[test]
fn windows_precision_and_their_defaults_are_read() {
    let e = encoder("");
    assert_eq!((e.max_tokens, e.max_total_tokens), (256, 4096));
    assert_eq!(e.precision, EncoderPrecision::Auto);
    let e = encoder(", max_tokens: 128, max_total_tokens: 128, precision: int8");
    assert_eq!((e.max_tokens, e.max_total_tokens), (128, 128));
    assert_eq!(e.precision, EncoderPrecision::Int8);
    let e = encoder(", max_total_tokens: 65536, precision: bf16");
    assert_eq!(
        (e.max_total_tokens, e.precision),
        (65536, EncoderPrecision::Bf16)
    );
    let shipped = ok(EXAMPLE)
        .encoder
        .map(|e| (e.max_total_tokens, e.precision));
    assert_eq!(shipped, Some((4096, EncoderPrecision::Auto)));
}

#[test]
fn a_total_below_one_window_or_past_the_bound_is_refused_by_name() {
    for (keys, range) in [
        (", max_total_tokens: 255", "256..=65536"),
        (", max_tokens: 64, max_total_tokens: 32", "64..=65536"),
        (", max_total_tokens: 65537", "256..=65536"),
    ] {
        let errs = encoder_errors(keys);
        assert!(has(&errs, "encoder.max_total_tokens"), "{keys}: {errs:?}");
        assert!(
            errs.iter().any(|e| e.contains(range)),
            "{keys}: the range is named: {errs:?}"
        );
    }
}

#[test]
fn an_unknown_precision_is_refused_with_the_choices() {
    let errs = encoder_errors(", precision: fp16");
    assert_eq!(
        errs,
        ["encoder.precision: `fp16`: use auto, f32, bf16 or int8"],
        "{errs:?}"
    );
}
