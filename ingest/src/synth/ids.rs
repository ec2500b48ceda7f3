//! Deterministic identifiers.
//!
//! Ids look like random version-4 UUIDs (so data sets from different seeds can share a
//! lake without colliding), but are unique by construction rather than by luck: the
//! low 62 bits are a keyed bijection of a per-kind sequence number, and the other 60 are
//! a hash. Two different sequence numbers of one kind and seed never map to the same id.

/// Kinds of numbered things: the 13 resource types, then the DICOM UIDs.
pub const KIND_SERIES: usize = 13;
pub const KIND_INSTANCE: usize = 14;
pub const KIND_STUDY_UID: usize = 15;
pub const KINDS: usize = 16;

const MASK62: u64 = (1 << 62) - 1;

/// SplitMix64's finalizer: a good 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A keyed permutation of `0..2^62`: every step (xor with a key, multiplication by an
/// odd constant mod 2^62, xor-shift right) is invertible on 62-bit values.
fn permute62(x: u64, key: u64) -> u64 {
    let mut x = (x ^ key) & MASK62;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9) & MASK62;
    x ^= x >> 29;
    x = (x.wrapping_add(key >> 7)) & MASK62;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB) & MASK62;
    x ^= x >> 32;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93) & MASK62;
    x ^ (x >> 30)
}

#[derive(Clone, Debug)]
pub struct Ids {
    keys: [u64; KINDS],
}

impl Ids {
    pub fn new(seed: u64) -> Self {
        let mut keys = [0; KINDS];
        for (k, key) in keys.iter_mut().enumerate() {
            *key = mix64(mix64(seed) ^ (k as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        }
        Ids { keys }
    }

    /// The 122 random-looking bits for sequence number `n` of `kind`: (high 60, low 62).
    fn bits(&self, kind: usize, n: u64) -> (u64, u64) {
        let key = self.keys[kind];
        let low = permute62(n, key);
        let high = mix64(low ^ key.rotate_left(17)) >> 4;
        (high, low)
    }

    /// A UUID-shaped id, e.g. `3f2a9c1e-7b4d-4e21-9a0c-5d6e7f809a1b`.
    pub fn uuid(&self, kind: usize, n: u64) -> String {
        let (high, low) = self.bits(kind, n);
        // Layout: time_low(32) time_mid(16) version(4)+12 variant(2)+14 node(48).
        let a = (high >> 28) as u32;
        let b = ((high >> 12) & 0xFFFF) as u16;
        let c = 0x4000 | (high & 0x0FFF) as u16;
        let d = 0x8000 | ((low >> 48) & 0x3FFF) as u16;
        let e = low & 0xFFFF_FFFF_FFFF;
        let mut s = String::with_capacity(36);
        hex(&mut s, a as u64, 8);
        s.push('-');
        hex(&mut s, b as u64, 4);
        s.push('-');
        hex(&mut s, c as u64, 4);
        s.push('-');
        hex(&mut s, d as u64, 4);
        s.push('-');
        hex(&mut s, e, 12);
        s
    }

    /// A DICOM UID under the UUID-derived root `2.25` (PS3.5 B.2): `2.25.<decimal>`.
    pub fn dicom_uid(&self, kind: usize, n: u64) -> String {
        let (high, low) = self.bits(kind, n);
        let v = ((high as u128) << 62) | low as u128;
        format!("2.25.{v}")
    }
}

fn hex(s: &mut String, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        s.push(HEX[((v >> (i * 4)) & 0xF) as usize] as char);
    }
}

/// The NPI check digit (Luhn over the 9 digits with the `80840` prefix), so identifiers
/// pass the checks that real systems apply.
pub fn npi(base9: u64) -> String {
    let digits = format!("80840{base9:09}");
    let mut sum = 0;
    // Luhn: double every second digit from the right, the check digit's position being
    // the rightmost, so the last given digit is doubled.
    for (i, ch) in digits.bytes().rev().enumerate() {
        let mut d = (ch - b'0') as u32;
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    let check = (10 - sum % 10) % 10;
    format!("{base9:09}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_injective_on_a_sample() {
        let ids = Ids::new(7);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..20_000u64 {
            assert!(seen.insert(ids.uuid(3, n)));
            assert!(seen.insert(ids.uuid(3, ((n + 1) << 20) | 1)));
        }
    }

    #[test]
    fn uuid_shape() {
        let id = Ids::new(1).uuid(0, 5);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        let uid = Ids::new(1).dicom_uid(KIND_SERIES, 5);
        assert!(uid.starts_with("2.25.") && uid.len() <= 64 && !uid[5..].starts_with('0'));
    }

    #[test]
    fn npi_check_digit() {
        // The CMS example: 123456789 -> check digit 3.
        assert_eq!(npi(123_456_789), "1234567893");
    }
}
