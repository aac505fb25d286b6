//! The connection tables' hash: which set a flow's entry lives in, and the
//! tag the entry carries. Every packet to a VIP computes it, so it has to be
//! cheap; and an outsider who picks the flows must not be able to crowd one
//! set, so it is keyed by a secret the loader draws. The dataplane's
//! `conn_hash` (bpf/lb_hash.h) computes the same from the same keys.
//!
//! It is the multiply-shift hash for vectors (Dietzfelbinger 1996; Thorup,
//! "High Speed Hashing for Integers and Strings", 2015): with 32-bit words
//! x1..x3 and 64-bit keys a0..a3, the upper half of
//! `a0 + a1*x1 + a2*x2 + a3*x3 (mod 2^64)` is strongly universal when the
//! keys are uniformly random. Two flows whose folded words differ then
//! share a set of a table of n sets with probability about 1/n, whichever
//! flows are chosen. (Flows are folded to three words first, addresses by
//! xor, as they were for jhash: IPv6 sources with the same fold, and the
//! same ports, land in one set whatever the keys.) Three multiplies and
//! three adds: jhash, which it replaces, took some thirty operations and
//! measured slower on every established path.

/// The four keys of one dataplane's connection tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKeys(pub [u64; 4]);

impl ConnKeys {
    /// The keys of a dataplane whose `conn_meta` seed is `seed`: splitmix64
    /// steps from it, so that a seed of 32 bits, the shape `conn_meta` has
    /// always had, still names them.
    pub fn from_seed(seed: u32) -> ConnKeys {
        let mut state = u64::from(seed);
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        ConnKeys([next(), next(), next(), next()])
    }

    /// The hash of a flow folded to three words (see `abi::conn_hash`).
    pub fn hash(&self, words: [u32; 3]) -> u32 {
        let [a0, a1, a2, a3] = self.0;
        let sum = a0
            .wrapping_add(a1.wrapping_mul(u64::from(words[0])))
            .wrapping_add(a2.wrapping_mul(u64::from(words[1])))
            .wrapping_add(a3.wrapping_mul(u64::from(words[2])));
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
        let k = ConnKeys([1 << 32, 3 << 32, 5 << 32, 7 << 32]);
        assert_eq!(k.hash([1, 1, 1]), 1 + 3 + 5 + 7);
        assert_eq!(k.hash([2, 0, 1]), 1 + 6 + 7);
        // the carries of the lower half reach the upper one
        let k = ConnKeys([u64::MAX, 1, 0, 0]);
        assert_eq!(k.hash([1, 0, 0]), 0);
        assert_eq!(k.hash([0, 0, 0]), u32::MAX);
    }

    #[test]
    fn flows_spread_over_the_sets() {
        // 64k flows differing only in the source port, 256 sets: no set may
        // hold more than twice its share
        let k = ConnKeys::from_seed(0x1234_5678);
        let mut sets = [0u32; 256];
        for port in 0..65536u32 {
            let h = k.hash([0x0a00_0001, port << 16 | 80, 0x0ac8_0001]);
            sets[(h >> 24) as usize] += 1;
        }
        assert!(sets.iter().all(|&n| n < 512), "{:?}", sets.iter().max());
    }
}
