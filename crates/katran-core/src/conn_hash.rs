//! The connection tables' hash: which set a flow's entry lives in, and the
//! tag the entry carries. Every packet to a VIP computes it, so it has to be
//! cheap; and an outsider who picks the flows must not be able to crowd one
//! set, so it is keyed by a secret the loader draws. The dataplane's
//! `conn_hash` (bpf/lb_hash.h) computes the same from the same keys.
//!
//! It is the multiply-shift hash for vectors (Dietzfelbinger 1996; Thorup,
//! "High Speed Hashing for Integers and Strings", 2015): with 32-bit words
//! x1..x9 and 64-bit keys a0..a9, the upper half of
//! `a0 + a1*x1 + ... + a9*x9 (mod 2^64)` is strongly universal when the
//! keys are uniformly random. Two distinct flows then share a set of a
//! table of n sets with probability about 1/n, whichever flows are chosen.
//! The words are the flow's: source and destination address (four words
//! each, the protocol xored into the destination's first, which only ever
//! names a VIP) and the two ports. An IPv4 flow's other address words are
//! zero, so the dataplane computes four terms for it. jhash, which this
//! replaces, took some thirty operations over words folded by xor, and
//! IPv6 sources with the same fold shared a set whatever the seed.

/// Words hashed: four of source address, four of destination, the ports.
pub const WORDS: usize = 9;

/// The keys of one dataplane's connection tables: a0, then a1..a9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKeys(pub [u64; WORDS + 1]);

impl ConnKeys {
    /// The keys of a dataplane whose `conn_meta` seed is `seed`: splitmix64
    /// steps from it, so that a seed of 32 bits, the shape `conn_meta` has
    /// always had, still names them.
    pub fn from_seed(seed: u32) -> ConnKeys {
        let mut state = u64::from(seed);
        let mut keys = [0u64; WORDS + 1];
        for k in &mut keys {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *k = z ^ (z >> 31);
        }
        ConnKeys(keys)
    }

    /// The hash of a flow's words (see `abi::conn_hash`).
    pub fn hash(&self, words: [u32; WORDS]) -> u32 {
        let sum = words
            .iter()
            .zip(&self.0[1..])
            .fold(self.0[0], |s, (&x, &a)| {
                s.wrapping_add(a.wrapping_mul(u64::from(x)))
            });
        (sum >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_follow_the_seed() {
        assert_eq!(ConnKeys::from_seed(7), ConnKeys::from_seed(7));
        assert_ne!(ConnKeys::from_seed(7), ConnKeys::from_seed(8));
        // splitmix64's first output from 0 (its published test value)
        assert_eq!(ConnKeys::from_seed(0).0[0], 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn the_hash_is_the_upper_half_of_the_keyed_sum() {
        let mut k = ConnKeys([0; WORDS + 1]);
        for (i, a) in k.0.iter_mut().enumerate() {
            *a = (i as u64 + 1) << 32;
        }
        assert_eq!(k.hash([0; WORDS]), 1);
        assert_eq!(k.hash([1, 0, 0, 0, 1, 0, 0, 0, 2]), 1 + 2 + 6 + 2 * 10);
        // the carries of the lower half reach the upper one
        let mut k = ConnKeys([0; WORDS + 1]);
        k.0[0] = u64::MAX;
        k.0[1] = 1;
        assert_eq!(k.hash([1, 0, 0, 0, 0, 0, 0, 0, 0]), 0);
        assert_eq!(k.hash([0; WORDS]), u32::MAX);
    }

    #[test]
    fn ipv6_sources_with_one_xor_fold_still_spread() {
        // sources that differ by the same value in two words: equal under
        // an xor fold, as jhash's input was
        let k = ConnKeys::from_seed(0x1234_5678);
        let mut hashes: Vec<u32> = (0..1024u32)
            .map(|d| k.hash([0x2001_0db8, 7, d, d, 0xfc00_0006, 0, 0, 1, 80 << 16 | 443]))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert!(hashes.len() > 1000, "{} distinct hashes", hashes.len());
    }

    #[test]
    fn flows_spread_over_the_sets() {
        // 64k flows differing only in the source port, 256 sets: no set may
        // hold more than twice its share
        let k = ConnKeys::from_seed(0x1234_5678);
        let mut sets = [0u32; 256];
        for port in 0..65536u32 {
            let h = k.hash([
                0x0a00_0001,
                0,
                0,
                0,
                0x0ac8_0001 ^ 6,
                0,
                0,
                0,
                port << 16 | 80,
            ]);
            sets[(h >> 24) as usize] += 1;
        }
        assert!(sets.iter().all(|&n| n < 512), "{:?}", sets.iter().max());
    }
}
