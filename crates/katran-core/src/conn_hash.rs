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
//! That bounds pairs, not how many flows one set gets: the sum is linear in
//! each word, so flows whose ports step evenly (a client's consecutive
//! source ports) land on an arithmetic progression, and under some keys a
//! progression folds onto a few sets: 22 of 400 such flows in one set of a
//! 1024-set table, whose sets then held 4 ways (now 8, `CONN_WAYS`). The
//! sum is therefore mixed before its upper half is taken
//! (`(s ^ s >> 32) * MIX`, one more multiply), which leaves such flows
//! spread as random ones are.
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
        (mix(sum) >> 32) as u32
    }
}

/// The odd multiplier of the final mix (2^64 / the golden ratio), the same
/// in bpf/lb_hash.h.
pub const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The final mix of the keyed sum: its upper half folded into the lower,
/// then one multiply carries every bit into the upper half the hash takes.
pub fn mix(sum: u64) -> u64 {
    (sum ^ sum >> 32).wrapping_mul(MIX)
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
    fn the_hash_is_the_upper_half_of_the_mixed_keyed_sum() {
        let mut k = ConnKeys([0; WORDS + 1]);
        for (i, a) in k.0.iter_mut().enumerate() {
            *a = (i as u64 + 1) << 32;
        }
        let upper = |sum: u64| (mix(sum) >> 32) as u32;
        assert_eq!(k.hash([0; WORDS]), upper(1 << 32));
        assert_eq!(
            k.hash([1, 0, 0, 0, 1, 0, 0, 0, 2]),
            upper((1 + 2 + 6 + 2 * 10) << 32)
        );
        // the carries of the lower half reach the upper one
        let mut k = ConnKeys([0; WORDS + 1]);
        k.0[0] = u64::MAX;
        k.0[1] = 1;
        assert_eq!(k.hash([1, 0, 0, 0, 0, 0, 0, 0, 0]), upper(0));
        assert_eq!(k.hash([0; WORDS]), upper(u64::MAX));
        // the mix: 2^32 folds to 2^32 + 1, times MIX
        assert_eq!(mix(1 << 32), ((1u64 << 32) | 1).wrapping_mul(MIX));
        assert_eq!(mix(0), 0);
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
    fn consecutive_source_ports_do_not_crowd_a_set() {
        // One client opening 400 connections from consecutive ports (as an
        // MQTT client pool or a NAT does), ports in network byte order as
        // the dataplane reads them, a table of 1024 sets. Hashed at random,
        // the fullest set holds at most 7 of them under any of these seeds;
        // a hash linear in the port word puts a whole arithmetic progression
        // in a few sets under some seeds (22 flows in one), and more flows
        // than a set has ways (CONN_WAYS, 8) evict each other whatever the
        // table's fill.
        let nbo = |p: u32| (p & 0xff) << 8 | p >> 8;
        let mut worst = (0, 0);
        for seed in 0..1000 {
            let k = ConnKeys::from_seed(seed);
            let mut sets = [0u32; 1024];
            for port in 30000..30400 {
                let words = [0x0163_0a0a, 0, 0, 0, 0x0a0a_0a0a ^ 6, 0, 0, 0];
                let mut w = [0u32; WORDS];
                w[..8].copy_from_slice(&words);
                w[8] = nbo(port) | nbo(1883) << 16;
                sets[((u64::from(k.hash(w)) * 1024) >> 32) as usize] += 1;
            }
            let most = sets.iter().copied().max().unwrap_or(0);
            if most > worst.0 {
                worst = (most, seed);
            }
        }
        assert!(
            worst.0 <= 8,
            "seed {} puts {} flows in one set",
            worst.1,
            worst.0
        );
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
