//! A tiny deterministic PRNG (xorshift64*) for picking targets: fast, no
//! allocation, no dependency, and good enough to spread load; nothing here
//! needs cryptographic quality.

/// xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed; any seed works (zero is remapped).
    pub fn new(seed: u64) -> Rng {
        // Mix the seed so that nearby seeds (thread numbers) diverge at once.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`0` when `n` is 0), by multiply-shift: the bias is
    /// at most n / 2^64, far below anything a load test can notice.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Picks `count` distinct client indexes from `0..perm.len()`, never `me`,
/// and calls `pick` with each. `perm` must hold a permutation of
/// `0..perm.len()` (it stays one: this is a partial Fisher–Yates shuffle, so
/// the cost is O(count) with no allocation). Picks fewer if there aren't
/// enough other clients.
pub fn pick_distinct(
    rng: &mut Rng,
    perm: &mut [u32],
    me: u32,
    count: usize,
    mut pick: impl FnMut(u32),
) {
    let n = perm.len();
    let mut picked = 0;
    let mut i = 0;
    while picked < count && i < n {
        let j = i + rng.below((n - i) as u64) as usize;
        perm.swap(i, j);
        if let Some(&c) = perm.get(i) {
            if c != me {
                pick(c);
                picked += 1;
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(7);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let x = rng.below(10) as usize;
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn seeds_diverge() {
        assert_ne!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }

    #[test]
    fn distinct_picks_exclude_me() {
        let mut rng = Rng::new(3);
        let mut perm: Vec<u32> = (0..20).collect();
        for round in 0..2_000 {
            let me = round % 20;
            let mut got = Vec::new();
            pick_distinct(&mut rng, &mut perm, me, 5, |c| got.push(c));
            assert_eq!(got.len(), 5);
            assert!(!got.contains(&me));
            let mut sorted = got.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "{got:?}");
        }
        // Still a permutation afterwards.
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn all_others_can_be_picked() {
        let mut rng = Rng::new(9);
        let mut perm: Vec<u32> = (0..4).collect();
        let mut got = Vec::new();
        pick_distinct(&mut rng, &mut perm, 2, 3, |c| got.push(c));
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 3]);
        let mut got = Vec::new();
        pick_distinct(&mut rng, &mut perm, 2, 10, |c| got.push(c));
        assert_eq!(got.len(), 3);
    }
}
