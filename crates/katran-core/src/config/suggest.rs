//! "Did you mean ...?": finds the known word closest to a misspelt one, so
//! unknown keys, enum values and flags come with the likely fix.

/// Letters compared without case, `_` and `-` taken as the same.
fn fold(s: &str) -> Vec<char> {
    s.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Edit distance counting a swap of two neighbours as one edit.
fn distance(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[n][m]
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = fold(word);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let cf = fold(c);
        let d = distance(&w, &cf);
        let limit = (w.len().max(cf.len()) / 3).max(1);
        let prefix = w.len() >= 3 && (cf.starts_with(&w) || w.starts_with(&cf));
        if d > limit && !prefix {
            continue;
        }
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        let keys = ["interfaces", "xdp_mode", "gateway_mac"];
        assert_eq!(closest("interface", keys), Some("interfaces"));
        assert_eq!(closest("intrefaces", keys), Some("interfaces"));
        assert_eq!(closest("xdp-mode", keys), Some("xdp_mode"));
        assert_eq!(closest("Gateway_MAC", keys), Some("gateway_mac"));
        assert_eq!(closest("gateway", keys), Some("gateway_mac"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(closest("weigth", ["address", "weight"]), Some("weight"));
        assert_eq!(
            closest("no_src_port", ["no-src-port", "quic"]),
            Some("no-src-port")
        );
    }
}
