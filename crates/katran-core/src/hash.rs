//! Hash functions, bit for bit as the dataplane and Katran compute them.
//!
//! Two sides have to agree on every hash here. The XDP program picks a ring
//! slot from a flow hash (the Linux kernel's jhash), so user space needs the
//! very same function to predict or explain where a flow lands. The rings
//! themselves are built from a per-real 64-bit hash that Katran takes from
//! folly's `IPAddress::hash()` and feeds through MurmurHash3; reproducing
//! those exactly is what makes our rings identical to Katran's, so a
//! Katran-managed fleet and this one send a given flow to the same real.
//!
//! Everything is plain integer arithmetic with wrapping semantics; nothing
//! here can fail or panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// jhash's arbitrary starting value (the kernel's `JHASH_INITVAL`).
pub const JHASH_INITVAL: u32 = 0xdead_beef;

/// Seed of the final `jhash_2words` of every flow hash.
///
/// In the dataplane this is `MAX_VIPS * RING_SIZE` of Katran's defaults; it is
/// kept at that number whatever our own limits are, or slots would disagree
/// with Katran's.
pub const FLOW_SEED: u32 = 512 * 65537;

/// Seed of the jhash that folds a 16-byte IPv6 source into one word.
pub const FLOW_SEED_V6: u32 = 512;

// ---------------------------------------------------------------------------
// jhash (kernel flavour of Bob Jenkins' lookup3)
// ---------------------------------------------------------------------------

#[inline]
fn jmix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline]
fn jfinal(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Little-endian word from up to four bytes, missing high bytes taken as 0.
#[inline]
fn le_word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .enumerate()
        .fold(0u32, |w, (i, &b)| w | (u32::from(b) << (8 * i)))
}

/// The kernel's `jhash(key, length, initval)` over an arbitrary byte string.
///
/// Words are read little-endian, as the kernel does on the little-endian
/// machines this balancer runs on. The length is mixed in as a `u32`, which is
/// what the kernel does too (keys longer than 4 GiB are not a thing here).
pub fn jhash_bytes(key: &[u8], initval: u32) -> u32 {
    let init = JHASH_INITVAL
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);

    let mut rest = key;
    // Every full 12-byte block is mixed, except the last one when the key is
    // an exact multiple of 12: that block goes through `jfinal` below.
    while rest.len() > 12 {
        a = a.wrapping_add(le_word(&rest[0..4]));
        b = b.wrapping_add(le_word(&rest[4..8]));
        c = c.wrapping_add(le_word(&rest[8..12]));
        jmix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }

    if rest.is_empty() {
        return c;
    }
    a = a.wrapping_add(le_word(rest));
    if rest.len() > 4 {
        b = b.wrapping_add(le_word(&rest[4..]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(le_word(&rest[8..]));
    }
    jfinal(&mut a, &mut b, &mut c);
    c
}

/// The kernel's `jhash_2words(a, b, initval)`.
pub fn jhash_2words(a: u32, b: u32, initval: u32) -> u32 {
    let s = initval.wrapping_add(JHASH_INITVAL).wrapping_add(2 << 2);
    let (mut a, mut b, mut c) = (a.wrapping_add(s), b.wrapping_add(s), s);
    jfinal(&mut a, &mut b, &mut c);
    c
}

/// The 32-bit word the dataplane builds from a flow's ports: the two ports as
/// they sit in the packet (network order, source first) read as one
/// little-endian `u32`. Ports are passed as ordinary numbers.
pub fn ports_word(sport: u16, dport: u16) -> u32 {
    let s = sport.to_be_bytes();
    let d = dport.to_be_bytes();
    u32::from_le_bytes([s[0], s[1], d[0], d[1]])
}

/// The dataplane's flow hash; `flow_hash(..) % ring_size` is the ring slot.
///
/// The caller applies the VIP's flags first (port-0 VIPs hash with
/// `dport = 0`, dport-hash VIPs with an unspecified source and
/// `sport = dport`). An IPv4-mapped IPv6 source is hashed as IPv6, because
/// that is what it is on the wire.
pub fn flow_hash(src: IpAddr, sport: u16, dport: u16) -> u32 {
    let ports = ports_word(sport, dport);
    let addr_word = match src {
        IpAddr::V4(v4) => u32::from_le_bytes(v4.octets()),
        IpAddr::V6(v6) => jhash_bytes(&v6.octets(), FLOW_SEED_V6),
    };
    jhash_2words(addr_word, ports, FLOW_SEED)
}

// ---------------------------------------------------------------------------
// folly's IPAddress::hash()
// ---------------------------------------------------------------------------

const CITY_KMUL: u64 = 0x9ddf_ea08_eb38_2d69;

/// CityHash's `Hash128to64` as folly spells it: `hash_128_to_64(upper, lower)`.
///
/// Note the asymmetry: the second multiply mixes in `upper`, the first
/// argument. Swapping the arguments gives a different (wrong) value.
pub fn hash_128_to_64(upper: u64, lower: u64) -> u64 {
    let mut a = (lower ^ upper).wrapping_mul(CITY_KMUL);
    a ^= a >> 47;
    let mut b = (upper ^ a).wrapping_mul(CITY_KMUL);
    b ^= b >> 47;
    b.wrapping_mul(CITY_KMUL)
}

/// 32-bit FNV-1 (multiply, then xor) with folly's quirk: the buffer is read as
/// `signed char`, so a byte of 0x80 or more is sign-extended before the xor
/// and flips the top 24 bits too.
pub fn fnv32_signed(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |h, &byte| {
        h.wrapping_mul(PRIME) ^ (byte as i8 as i32 as u32)
    })
}

const SPOOKY_CONST: u64 = 0xdead_beef_dead_beef;

/// Reads up to eight bytes as a little-endian u64, zero-padding the top.
#[inline]
fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |w, (i, &b)| w | (u64::from(b) << (8 * i)))
}

#[inline]
fn spooky_short_mix(h: &mut [u64; 4]) {
    // (rotation, the word rotated, the word it is added to and then xored
    // into the next) -- the twelve steps of SpookyV2's ShortMix, each being
    // h[x] = rot(h[x], r); h[x] += h[y]; h[z] ^= h[x].
    const STEPS: [(u32, usize, usize, usize); 12] = [
        (50, 2, 3, 0),
        (52, 3, 0, 1),
        (30, 0, 1, 2),
        (41, 1, 2, 3),
        (54, 2, 3, 0),
        (48, 3, 0, 1),
        (38, 0, 1, 2),
        (37, 1, 2, 3),
        (62, 2, 3, 0),
        (34, 3, 0, 1),
        (5, 0, 1, 2),
        (36, 1, 2, 3),
    ];
    for &(r, x, y, z) in &STEPS {
        h[x] = h[x].rotate_left(r);
        h[x] = h[x].wrapping_add(h[y]);
        h[z] ^= h[x];
    }
}

#[inline]
fn spooky_short_end(h: &mut [u64; 4]) {
    // Each step of SpookyV2's ShortEnd is
    // h[z] ^= h[x]; h[x] = rot(h[x], r); h[z] += h[x].
    const STEPS: [(u32, usize, usize); 11] = [
        (15, 2, 3),
        (52, 3, 0),
        (26, 0, 1),
        (51, 1, 2),
        (28, 2, 3),
        (9, 3, 0),
        (47, 0, 1),
        (54, 1, 2),
        (32, 2, 3),
        (25, 3, 0),
        (63, 0, 1),
    ];
    for &(r, x, z) in &STEPS {
        h[z] ^= h[x];
        h[x] = h[x].rotate_left(r);
        h[z] = h[z].wrapping_add(h[x]);
    }
}

/// SpookyHash V2 `Hash128` for messages shorter than 192 bytes (the only
/// ones the reference hashes with its "short" algorithm, and the only ones we
/// need: an IPv6 address is 16 bytes). Returns `(hash1, hash2)`.
fn spooky_v2_short(msg: &[u8], seed1: u64, seed2: u64) -> (u64, u64) {
    debug_assert!(msg.len() < 192, "long SpookyHash path not implemented");
    let mut h = [seed1, seed2, SPOOKY_CONST, SPOOKY_CONST];

    let mut rest = msg;
    if msg.len() >= 16 {
        while rest.len() >= 32 {
            h[2] = h[2].wrapping_add(le_u64(&rest[0..8]));
            h[3] = h[3].wrapping_add(le_u64(&rest[8..16]));
            spooky_short_mix(&mut h);
            h[0] = h[0].wrapping_add(le_u64(&rest[16..24]));
            h[1] = h[1].wrapping_add(le_u64(&rest[24..32]));
            rest = &rest[32..];
        }
        if rest.len() >= 16 {
            h[2] = h[2].wrapping_add(le_u64(&rest[0..8]));
            h[3] = h[3].wrapping_add(le_u64(&rest[8..16]));
            spooky_short_mix(&mut h);
            rest = &rest[16..];
        }
    }

    // The length goes into the top byte of h3 whatever the remainder is.
    h[3] = h[3].wrapping_add((msg.len() as u64) << 56);
    if rest.is_empty() {
        h[2] = h[2].wrapping_add(SPOOKY_CONST);
        h[3] = h[3].wrapping_add(SPOOKY_CONST);
    } else {
        // Up to 15 trailing bytes: the first eight into h2, the rest into h3,
        // both little-endian and zero-padded.
        h[2] = h[2].wrapping_add(le_u64(rest));
        if rest.len() > 8 {
            h[3] = h[3].wrapping_add(le_u64(&rest[8..]));
        }
    }
    spooky_short_end(&mut h);
    (h[0], h[1])
}

/// folly's hash of an IPv4 address: `hash_combine(AF_INET, fnv32(octets))`.
fn real_hash_v4(addr: Ipv4Addr) -> u64 {
    const AF_INET: u64 = 2;
    hash_128_to_64(AF_INET, u64::from(fnv32_signed(&addr.octets())))
}

/// folly's hash of a (non-mapped) IPv6 address:
/// `hash_combine(AF_INET6, spooky.0, spooky.1)`.
fn real_hash_v6(addr: Ipv6Addr) -> u64 {
    const AF_INET6: u64 = 10;
    let (a, b) = spooky_v2_short(&addr.octets(), 0, 0);
    hash_128_to_64(AF_INET6, hash_128_to_64(a, b))
}

/// A real's 64-bit hash, equal to folly's `IPAddress::hash()` on x86-64 Linux.
///
/// This is the only input Maglev takes from a real, so it decides where the
/// real lands on every ring. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
/// hashes as the IPv4 address, as folly's does.
pub fn real_hash(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => real_hash_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => real_hash_v4(v4),
            None => real_hash_v6(v6),
        },
    }
}

// ---------------------------------------------------------------------------
// MurmurHash3 for Maglev permutations
// ---------------------------------------------------------------------------

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// MurmurHash3 x64-128 of the 16 bytes `a.to_le_bytes() ++ b.to_le_bytes()`,
/// reduced to 64 bits the way Katran's Maglev does.
///
/// The value is `fmix(h1) + fmix(h2)` from the finalisation, which is exactly
/// the first 64-bit word of the standard 128-bit output (the low half of
/// Python's `mmh3.hash128(.., x64arch=True)`). The second word is not used.
pub fn murmur3_pair(a: u64, b: u64, seed: u32) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mut h1 = u64::from(seed);
    let mut h2 = u64::from(seed);

    let k1 = a.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    h1 ^= k1;
    h1 = h1
        .rotate_left(27)
        .wrapping_add(h2)
        .wrapping_mul(5)
        .wrapping_add(0x52dc_e729);

    let k2 = b.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    h2 ^= k2;
    h2 = h2
        .rotate_left(31)
        .wrapping_add(h1)
        .wrapping_mul(5)
        .wrapping_add(0x3849_5ab5);

    h1 ^= 16;
    h2 ^= 16;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    fmix64(h1).wrapping_add(fmix64(h2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    // Reference values below were produced while writing these tests by an
    // independent Python transcription of the kernel's jhash.h (not derived
    // from this file), and for Murmur/Spooky by the PyPI packages `mmh3` 5.3.1
    // and `spookyhash` 2.1.1, which wrap the C/C++ reference code.

    #[test]
    fn jhash_empty_is_the_unfinalised_seed() {
        // Length 0 skips the final mix: the result is INITVAL + 0 + initval.
        assert_eq!(jhash_bytes(&[], 0), 0xdead_beef);
        assert_eq!(jhash_bytes(&[], 1), 0xdead_bef0);
        assert_eq!(jhash_bytes(&[], 0x2152_4111), 0x0000_0000);
    }

    #[test]
    fn jhash_bytes_reference_values() {
        let cases: &[(&[u8], u32, u32)] = &[
            (b"a", 0, 0x58d6_8708),
            (b"abcd", 0, 0xb5f4_889c),
            (b"hello world!", 0, 0x4b89_46db),
            (b"hello world!!", 7, 0xd15c_1dc8),
            (b"0123456789abcdefghijklmnopqrstuvwxyz", 512, 0x2a03_e501),
            (&[0xff; 16], 512, 0xb8f6_56ac),
            (
                &[
                    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                    22, 23,
                ],
                0,
                0x9c0a_dd53,
            ),
        ];
        for &(key, init, want) in cases {
            assert_eq!(jhash_bytes(key, init), want, "jhash({key:?}, {init})");
        }
    }

    #[test]
    fn jhash_2words_is_jhash_of_the_two_words() {
        // The kernel's fixed-length shortcut must agree with the general
        // function over the same eight little-endian bytes.
        assert_eq!(jhash_2words(1, 2, 3), 0x2527_81b5);
        for (a, b, init) in [(1, 2, 3), (0xdead_beef, 0x5000, FLOW_SEED), (0, 0, 0)] {
            let mut key = [0u8; 8];
            key[..4].copy_from_slice(&u32::to_le_bytes(a));
            key[4..].copy_from_slice(&u32::to_le_bytes(b));
            assert_eq!(jhash_bytes(&key, init), jhash_2words(a, b, init));
        }
    }

    #[test]
    fn ports_word_is_wire_order_read_little_endian() {
        // sport 0x1234, dport 0x5678 sit on the wire as 12 34 56 78.
        assert_eq!(ports_word(0x1234, 0x5678), 0x7856_3412);
        assert_eq!(ports_word(80, 0), 0x0000_5000);
    }

    #[test]
    fn flow_hash_reference_values() {
        assert_eq!(flow_hash(v4("192.168.1.1"), 31337, 80), 0xc7e6_8632);
        assert_eq!(flow_hash(v4("0.0.0.0"), 42, 42), 0xdf5e_9469);
        assert_eq!(flow_hash(v6("fc00:2::1"), 31337, 80), 0x9c5a_2eda);
        // A mapped source is hashed as the 16-byte address it is.
        assert_ne!(
            flow_hash(v6("::ffff:192.168.1.1"), 31337, 80),
            flow_hash(v4("192.168.1.1"), 31337, 80)
        );
    }

    #[test]
    fn fnv32_sign_extends_high_bytes() {
        // Unsigned FNV-1 of [0x80] would be 0x050c5d1f ^ 0x80 = 0x050c5d9f.
        // folly reads a signed char, so 0x80 becomes 0xffffff80.
        assert_eq!(fnv32_signed(&[0x80]), 0x050c_5d1f ^ 0xffff_ff80);
        assert_eq!(fnv32_signed(&[0x80]), 0xfaf3_a29f);
        // Bytes below 0x80 behave like plain FNV-1.
        assert_eq!(fnv32_signed(&[0x7f]), 0x050c_5d1f ^ 0x7f);
        assert_eq!(fnv32_signed(&[]), 0x811c_9dc5);
        assert_eq!(fnv32_signed(&[10, 0, 0, 1]), 0xd692_f426);
        assert_eq!(fnv32_signed(&[192, 168, 1, 1]), 0x33a2_0e1b);
    }

    #[test]
    fn hash_128_to_64_is_order_sensitive() {
        assert_eq!(hash_128_to_64(0, 0), 0);
        assert_eq!(hash_128_to_64(2, 0xd692_f426), 0xd671_359d_baa1_5954);
        assert_ne!(hash_128_to_64(1, 2), hash_128_to_64(2, 1));
    }

    #[test]
    fn murmur3_pair_matches_reference_mmh3() {
        // mmh3.hash128(a_le + b_le, seed, x64arch=True, signed=False) & (2**64-1)
        assert_eq!(murmur3_pair(0, 0, 0), 0x4bbd_1bf2_7da9_18d6);
        assert_eq!(murmur3_pair(1, 42, 0), 0x0b85_e5b7_38ec_6ba3);
        assert_eq!(
            murmur3_pair(0x0123_4567_89ab_cdef, 2_718_281_828, 2307),
            0x5805_79b8_07a9_5615
        );
        assert_eq!(
            murmur3_pair(u64::MAX, u64::MAX, u32::MAX),
            0x06da_21bb_0268_bf00
        );
    }

    #[test]
    fn spooky_matches_reference_for_all_short_lengths() {
        // spookyhash.hash128 of bytes 0..len with seeds (0, 0): (h1, h2).
        let msg: Vec<u8> = (0u8..=191).collect();
        let cases: &[(usize, u64, u64)] = &[
            (0, 0x2327_06fc_6bf5_0919, 0x8b72_ee65_b4e8_51c7),
            (1, 0x8ae2_f418_0429_1280, 0x1f31_5d71_4e2d_1d29),
            (7, 0xdf46_961a_1163_469d, 0x52a6_63b9_3d35_1d39),
            (8, 0x7c81_6246_374a_845c, 0x2c13_bccc_c834_9657),
            (9, 0x73cf_4d8c_7021_19f2, 0xf52d_2149_5475_78a5),
            (12, 0x7658_5dc8_39cd_ca5a, 0xa74a_2cca_2d7e_a43f),
            (15, 0xd9aa_86de_65dc_278b, 0xda24_0564_552a_4a10),
            (16, 0x3402_25d6_331f_2651, 0x886e_7c23_939a_583d),
            (17, 0x9eff_109b_3512_e3b9, 0xe522_59d5_21c8_dca4),
            (24, 0x2b49_9ed4_49df_ce6f, 0xc6b9_2d6f_5462_4b16),
            (31, 0xa396_2a6c_761f_fe09, 0x678f_c7da_4ac3_197a),
            (32, 0x57f5_0b68_e262_3fd2, 0x8939_24ef_f994_198b),
            (33, 0x3e95_8dcb_ef6d_d224, 0x6482_a6da_6de7_dc07),
            (48, 0x9981_3df6_e1af_f986, 0x318e_b6f6_552a_98c2),
            (63, 0xe67c_61fc_fbc0_b5b9, 0x767b_4fe8_54a2_1d6b),
            (64, 0x0d1e_b0db_c200_ee89, 0xb3b1_4b59_feeb_a967),
            (100, 0x227a_7341_0f9a_8c4c, 0x4c4b_4b26_f70d_083a),
            (191, 0x7104_3a03_b5bb_462f, 0xfe7d_0ad0_a893_b638),
        ];
        for &(len, h1, h2) in cases {
            assert_eq!(spooky_v2_short(&msg[..len], 0, 0), (h1, h2), "len {len}");
        }
        assert_eq!(
            spooky_v2_short(&msg[..16], 0x1234, 0x5678),
            (0x772c_6c9e_7f6a_bdae, 0x41cb_8b62_8eec_047e)
        );
    }

    #[test]
    fn real_hash_reference_values() {
        assert_eq!(real_hash(v4("10.0.0.1")), 0xd671_359d_baa1_5954);
        assert_eq!(real_hash(v4("10.0.0.2")), 0x2cd4_26d0_08b9_0279);
        assert_eq!(real_hash(v6("fc00::1")), 0x64e7_4a25_b986_d744);
        assert_eq!(real_hash(v6("fc00::2")), 0x87d2_4783_5b02_295b);
        assert_eq!(real_hash(v6("::10.0.0.1")), 0xba9b_122e_cf06_fe8d);
    }

    #[test]
    fn real_hash_of_mapped_v6_is_the_v4_hash() {
        assert_eq!(real_hash(v6("::ffff:10.0.0.1")), real_hash(v4("10.0.0.1")));
        assert_ne!(real_hash(v6("::10.0.0.1")), real_hash(v4("10.0.0.1")));
    }
}
