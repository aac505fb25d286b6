//! `n % d` for a divisor fixed at load time, without a division: the
//! dataplane picks a flow's ring slot as `hash % ring_size` on every new
//! flow, and a 32-bit division costs tens of cycles, about a tenth of a
//! SYN's whole path. The program gets the two constants of [`FastMod`] as
//! load-time settings and computes the same remainder with a multiply, two
//! shifts and a subtraction (`ring_slot` in bpf/lb_select.h).
//!
//! The method is Granlund and Montgomery's division by invariant integers
//! (1994, figure 4.1): exact for every 32-bit dividend and every divisor
//! from 2 up.

/// The constants that divide by one divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastMod {
    pub divisor: u32,
    /// floor(2^32 * (2^l - d) / d) + 1, with l = ceil(log2 d).
    pub mult: u32,
    /// l - 1.
    pub shift: u32,
}

impl FastMod {
    /// The constants for `divisor`; `None` below 2.
    pub fn new(divisor: u32) -> Option<FastMod> {
        if divisor < 2 {
            return None;
        }
        let d = u64::from(divisor);
        let l = 32 - (divisor - 1).leading_zeros();
        let mult = (((1u64 << 32) * ((1u64 << l) - d)) / d + 1) as u32;
        Some(FastMod {
            divisor,
            mult,
            shift: l - 1,
        })
    }

    /// `n / divisor`, as the dataplane computes it.
    pub fn quotient(&self, n: u32) -> u32 {
        let t = ((u64::from(self.mult) * u64::from(n)) >> 32) as u32;
        (t + ((n - t) >> 1)) >> self.shift
    }

    /// `n % divisor`, as the dataplane computes it.
    pub fn rem(&self, n: u32) -> u32 {
        n - self.quotient(n) * self.divisor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Divisors around every power of two and the ring sizes people use,
    /// each with dividends around its multiples and the ends of the range.
    #[test]
    fn the_remainder_is_exact() {
        let mut divisors = vec![2u32, 3, 5, 7, 13, 251, 65_521, 65_537, 131_071, 999_983];
        for k in 1..32 {
            let p = 1u32 << k;
            divisors.extend([p - 1, p, p.saturating_add(1)]);
        }
        divisors.push(u32::MAX);
        let mut x = 0x9e37_79b9u32;
        for d in divisors.into_iter().filter(|d| *d >= 2) {
            let f = FastMod::new(d).unwrap();
            let mut dividends = vec![0, 1, d - 1, d, u32::MAX, u32::MAX - 1, u32::MAX / 2];
            for q in [1u32, 2, 1000, u32::MAX / d] {
                let m = q.saturating_mul(d);
                dividends.extend([m.saturating_sub(1), m, m.saturating_add(1)]);
            }
            for _ in 0..20_000 {
                // xorshift: dividends spread over the whole range
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                dividends.push(x);
            }
            for n in dividends {
                assert_eq!(f.rem(n), n % d, "{n} % {d}");
                assert_eq!(f.quotient(n), n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn below_two_there_is_nothing_to_divide_by() {
        assert_eq!(FastMod::new(0), None);
        assert_eq!(FastMod::new(1), None);
    }
}
