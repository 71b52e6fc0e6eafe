//! Windows: how a text longer than one row of the model is read, and how
//! its window embeddings become one. Pure.
//!
//! A text's token ids (`[CLS]` wordpieces… `[SEP]`, as the tokenizer gives
//! them) of at most `max_tokens` are one window, unchanged. A longer text
//! keeps at most `max_total_tokens - 2` wordpieces (its first), split into
//! the fewest consecutive windows of at most `max_tokens - 2` wordpieces,
//! balanced (their sizes differ by at most one, so no window is a stub of a
//! few tokens), each wrapped in the text's own first and last special
//! tokens. Windows do not overlap.

/// The rows a text is read in, and whether tokens were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Windows {
    /// One row of ids per window, in text order, each at most `max_tokens`.
    pub(super) rows: Vec<Vec<u32>>,
    /// The text had more than `max_total_tokens` tokens: the rest is not read.
    pub(super) cut: bool,
}

/// Splits `ids` (special tokens first and last) into windows of at most
/// `max_tokens` ids. Needs `3 <= max_tokens <= max_total_tokens` (the
/// encoder checks it at load).
pub(super) fn split(ids: &[u32], max_tokens: usize, max_total_tokens: usize) -> Windows {
    let cut = ids.len() > max_total_tokens;
    if ids.len() <= max_tokens || ids.len() < 2 || max_tokens < 3 {
        return Windows {
            rows: vec![ids.to_vec()],
            cut,
        };
    }
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    let pieces = &ids[1..ids.len() - 1];
    let pieces = &pieces[..pieces.len().min(max_total_tokens.saturating_sub(2))];
    let per_window = max_tokens - 2;
    let n = pieces.len().div_ceil(per_window).max(1);
    // The first `longer` windows hold one wordpiece more than the rest.
    let (size, longer) = (pieces.len() / n, pieces.len() % n);
    let mut rows = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let end = start + size + usize::from(i < longer);
        let mut row = Vec::with_capacity(end - start + 2);
        row.push(first);
        row.extend_from_slice(&pieces[start..end]);
        row.push(last);
        rows.push(row);
        start = end;
    }
    Windows { rows, cut }
}

/// The L2-normalised mean of unit `vectors` weighted by `tokens` (one per
/// vector); a single vector is returned unchanged, bit for bit.
pub(super) fn combine(vectors: &[Vec<f32>], tokens: &[usize]) -> Vec<f32> {
    if let [one] = vectors {
        return one.clone();
    }
    let dim = vectors.first().map_or(0, Vec::len);
    let mut sum = vec![0f64; dim];
    for (v, &t) in vectors.iter().zip(tokens) {
        let w = t.max(1) as f64;
        for (s, x) in sum.iter_mut().zip(v) {
            *s += w * f64::from(*x);
        }
    }
    let norm = sum.iter().map(|s| s * s).sum::<f64>().sqrt().max(1e-12);
    sum.iter().map(|s| (s / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::{Windows, combine, split};

    const CLS: u32 = 101;
    const SEP: u32 = 102;

    /// `[CLS]` 1..=n `[SEP]`: a text of n wordpieces.
    fn text(n: u32) -> Vec<u32> {
        let mut ids = vec![CLS];
        ids.extend(1..=n);
        ids.push(SEP);
        ids
    }

    /// The row the encoder embedded before windows: the first `max - 1`
    /// ids and the final special token.
    fn row_before_windows(ids: &[u32], max: usize) -> Vec<u32> {
        if ids.len() <= max {
            return ids.to_vec();
        }
        let mut out = ids[..max - 1].to_vec();
        out.extend(ids.last().copied());
        out
    }

    fn check(wordpieces: u32, max_tokens: usize, max_total: usize, want: &[(u32, u32)], cut: bool) {
        let got = split(&text(wordpieces), max_tokens, max_total);
        let rows: Vec<Vec<u32>> = want
            .iter()
            .map(|&(a, b)| {
                let mut r = vec![CLS];
                r.extend(a..=b);
                r.push(SEP);
                r
            })
            .collect();
        assert_eq!(got, Windows { rows, cut }, "{wordpieces} wordpieces");
        assert!(got.rows.iter().all(|r| r.len() <= max_tokens));
    }

    #[test]
    fn a_text_of_one_window_is_the_row_it_always_was() {
        for n in [0, 1, 5, 254] {
            let ids = text(n);
            let w = split(&ids, 256, 4096);
            assert_eq!(
                w.rows,
                vec![row_before_windows(&ids, 256)],
                "{n} wordpieces"
            );
            assert_eq!(w.rows, vec![ids], "unchanged");
            assert!(!w.cut);
        }
    }

    #[test]
    fn a_total_of_one_window_truncates_as_before_windows() {
        for n in [255, 300, 5000] {
            let ids = text(n);
            let w = split(&ids, 256, 256);
            assert_eq!(
                w.rows,
                vec![row_before_windows(&ids, 256)],
                "{n} wordpieces"
            );
            assert!(w.cut);
        }
    }

    #[test]
    fn windows_split_at_exact_balanced_token_boundaries() {
        // 8 tokens per window = 6 wordpieces.
        check(6, 8, 64, &[(1, 6)], false);
        check(7, 8, 64, &[(1, 4), (5, 7)], false);
        check(12, 8, 64, &[(1, 6), (7, 12)], false);
        check(13, 8, 64, &[(1, 5), (6, 9), (10, 13)], false);
        // 254 wordpieces per window of 256; 3,000 wordpieces in 12 windows
        // of 250.
        let w = split(&text(3000), 256, 4096);
        assert_eq!(w.rows.len(), 12);
        assert!(
            w.rows
                .iter()
                .all(|r| r.len() == 252 && r[0] == CLS && r[251] == SEP)
        );
        assert_eq!((w.rows[0][1], w.rows[0][250]), (1, 250));
        assert_eq!((w.rows[11][1], w.rows[11][250]), (2751, 3000));
        let read: Vec<u32> = w
            .rows
            .iter()
            .flat_map(|r| r[1..r.len() - 1].to_vec())
            .collect();
        assert_eq!(
            read,
            (1..=3000).collect::<Vec<_>>(),
            "every wordpiece once, in order"
        );
        assert!(!w.cut);
    }

    #[test]
    fn the_total_bounds_the_tokens_read_and_says_so() {
        // 20 tokens (18 wordpieces) at most: wordpieces 1..=18 are read.
        check(18, 8, 20, &[(1, 6), (7, 12), (13, 18)], false);
        check(19, 8, 20, &[(1, 6), (7, 12), (13, 18)], true);
        check(1000, 8, 20, &[(1, 6), (7, 12), (13, 18)], true);
        // The default: 4,094 wordpieces of a long text in 17 windows.
        let w = split(&text(10_000), 256, 4096);
        assert!(w.cut);
        assert_eq!(w.rows.len(), 17);
        let read: usize = w.rows.iter().map(|r| r.len() - 2).sum();
        assert_eq!(read, 4094);
        assert_eq!(w.rows[16][w.rows[16].len() - 2], 4094);
    }

    #[test]
    fn window_embeddings_combine_by_tokens_to_unit_length() {
        let one = vec![0.6f32, 0.8];
        assert_eq!(combine(std::slice::from_ref(&one), &[7]), one);
        let c = combine(&[vec![1.0, 0.0], vec![0.0, 1.0]], &[3, 1]);
        let norm = (c[0] * c[0] + c[1] * c[1]).sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "{c:?}");
        assert!((c[0] / c[1] - 3.0).abs() < 1e-5, "weighted 3:1: {c:?}");
    }
}
