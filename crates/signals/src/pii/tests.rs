//! Unit tests of the PII detectors: each kind found, near misses refused.

use super::*;

/// Kinds and matched text found in `text`.
fn check(text: &str) -> Vec<(PiiKind, String)> {
    PiiDetector::new()
        .detect(text)
        .into_iter()
        .map(|s| (s.kind, text[s.start..s.end].to_owned()))
        .collect()
}

fn kinds(text: &str) -> Vec<PiiKind> {
    check(text).into_iter().map(|(k, _)| k).collect()
}

#[test]
fn finds_each_kind_with_its_exact_span() {
    let text = "Mail ana.lopez+x@mail.example.org or call +1 (415) 555-0132. Card 4111 1111 1111 1111, \
                SSN 123-45-6789, IBAN GB82 WEST 1234 5698 7654 32, from 192.168.10.7 or 2001:db8::8a2e:370:7334.";
    let found = check(text);
    let expect = [
        (PiiKind::Email, "ana.lopez+x@mail.example.org"),
        (PiiKind::Phone, "+1 (415) 555-0132"),
        (PiiKind::CreditCard, "4111 1111 1111 1111"),
        (PiiKind::UsSsn, "123-45-6789"),
        (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32"),
        (PiiKind::IpAddress, "192.168.10.7"),
        (PiiKind::IpAddress, "2001:db8::8a2e:370:7334"),
    ];
    let expect: Vec<(PiiKind, String)> =
        expect.iter().map(|(k, s)| (*k, (*s).to_owned())).collect();
    assert_eq!(found, expect);
}

#[test]
fn checksums_and_ranges_reject_near_misses() {
    assert!(
        kinds("card 4111 1111 1111 1112")
            .iter()
            .all(|k| *k != PiiKind::CreditCard),
        "Luhn fails"
    );
    assert!(
        !kinds("IBAN GB82 WEST 1234 5698 7654 33").contains(&PiiKind::Iban),
        "mod-97 fails"
    );
    assert!(
        !kinds("SSN 666-12-3456").contains(&PiiKind::UsSsn),
        "area 666 is never issued"
    );
    assert!(
        !kinds("SSN 123-00-4567").contains(&PiiKind::UsSsn),
        "group 00 is never issued"
    );
    assert!(kinds("version 1.2.3.400").is_empty(), "not an IPv4 address");
    assert!(
        kinds("meet at 2024-05-17").is_empty(),
        "a date is not a phone number"
    );
    assert!(kinds("I have 42 apples and 7 pears").is_empty());
    assert!(kinds("ratio 3:2 or time 12:30").is_empty(), "not IPv6");
    assert!(
        kinds("call 0000000000000000")
            .iter()
            .all(|k| *k != PiiKind::CreditCard),
        "all zeros"
    );
}

#[test]
fn lowercase_iban_and_plain_card_digits_are_found() {
    assert_eq!(
        kinds("gb42nawi04454264788619"),
        vec![PiiKind::Iban],
        "checksum valid in the data set"
    );
    assert_eq!(kinds("4454794511390933"), vec![PiiKind::CreditCard]);
    assert_eq!(
        kinds("numbers: 905-674-3793 and 07700 063 966"),
        vec![PiiKind::Phone, PiiKind::Phone]
    );
    assert_eq!(kinds("call me on +447700677662"), vec![PiiKind::Phone]);
}

#[test]
fn two_group_numbers_need_a_phone_word_before_them() {
    assert!(
        kinds("The restaurant is at 704 1436 Redbud Drive").is_empty(),
        "an address"
    );
    assert_eq!(kinds("my phone is 467 3395"), vec![PiiKind::Phone]);
    assert!(kinds("When: 2000-04-16 11:34:35").is_empty(), "a date-time");
    assert_eq!(
        kinds("Phone: 0490 75 40 81"),
        vec![PiiKind::Phone],
        "four groups, not a date"
    );
    assert_eq!(
        check("Fax: 345-899-3560x4587"),
        vec![(PiiKind::Phone, "345-899-3560x4587".to_owned())]
    );
}

#[test]
fn redaction_replaces_every_span_with_its_placeholder() {
    let text = "reach me at bob@corp.io, card 4111-1111-1111-1111!";
    let spans = PiiDetector::new().detect(text);
    assert_eq!(
        redact(text, &spans),
        "reach me at [EMAIL], card [CREDIT_CARD]!"
    );
    assert_eq!(redact("nothing here", &[]), "nothing here");
}

#[test]
fn spans_respect_multibyte_text() {
    let text = "Café ☕ — écrivez à zoe@exemple.fr, merci";
    let found = check(text);
    assert_eq!(found, vec![(PiiKind::Email, "zoe@exemple.fr".to_owned())]);
    assert_eq!(
        redact(text, &PiiDetector::new().detect(text)),
        "Café ☕ — écrivez à [EMAIL], merci"
    );
}

#[test]
fn luhn_and_iban_helpers() {
    assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    assert!(!luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
    assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
    assert!(!iban_valid("DE89 3704 0044 0532 0130 01"));
}
