//! The built-in Random User generator: the same seed gives the same users, the
//! same uuids, in the same page order, on every machine and in every version.
//!
//! User `k` of a seed's sequence is drawn from its own random stream, seeded by
//! `(seed, k)`, so any page is computed directly: page `p` of `results` users
//! is users `(p-1)*results .. p*results`, as in the real API.

mod nationalities;

use std::fmt::Write as _;

use crate::record::{
    ApiCoordinates, ApiDate, ApiId, ApiLocation, ApiLogin, ApiName, ApiPicture, ApiStreet,
    ApiTimezone, ApiUser, Scalar, iso8601_millis,
};
pub use nationalities::{NATIONALITIES, Nationality, PostcodeFormat, by_code};

/// A gender filter, as the API's `gender=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Female,
    Male,
}

impl Gender {
    pub fn parse(s: &str) -> Option<Gender> {
        match s.to_ascii_lowercase().as_str() {
            "female" => Some(Gender::Female),
            "male" => Some(Gender::Male),
            _ => None,
        }
    }
}

/// The random stream behind one user.
///
/// SplitMix64, written out here on purpose: the generator's output is a
/// compatibility promise (a seed names the same users forever), so the
/// algorithm must not change with a dependency's sampling code.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0). The tiny modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Fills a pattern: `#` a digit, `@` an uppercase letter, others literal.
    fn pattern(&mut self, pattern: &str) -> String {
        pattern
            .chars()
            .map(|c| match c {
                '#' => char::from(b'0' + self.below(10) as u8),
                '@' => char::from(b'A' + self.below(26) as u8),
                other => other,
            })
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(len);
        s
    }
}

/// `ten_thousandths / 10_000 - offset` with four decimals, as the API writes
/// coordinates ("-69.8246"); integer arithmetic, so no float formatting.
fn degrees(ten_thousandths: u64, offset: i64) -> String {
    let v = ten_thousandths as i64 - offset * 10_000;
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
}

/// FNV-1a: turns the API's free-text seed into the generator's 64-bit seed.
fn hash_seed(seed: &str) -> u64 {
    seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

const TITLES_MALE: &[&str] = &["Mr", "Mr", "Mr", "Monsieur"];
const TITLES_FEMALE: &[&str] = &["Ms", "Mrs", "Miss", "Madame"];
const ADJECTIVES: &[&str] = &[
    "yellow",
    "blue",
    "red",
    "green",
    "purple",
    "orange",
    "silver",
    "golden",
    "lazy",
    "happy",
    "sad",
    "tiny",
    "big",
    "heavy",
    "crazy",
    "brown",
    "white",
    "black",
    "beautiful",
    "angry",
];
const ANIMALS: &[&str] = &[
    "peacock",
    "tiger",
    "koala",
    "rabbit",
    "swan",
    "leopard",
    "fish",
    "bird",
    "lion",
    "elephant",
    "butterfly",
    "goose",
    "wolf",
    "bear",
    "gorilla",
    "frog",
    "panda",
    "meercat",
    "dog",
    "cat",
];
const PASSWORDS: &[&str] = &[
    "addison",
    "blazer",
    "cowboy",
    "dragon",
    "eagle1",
    "freedom",
    "ginger",
    "hunter",
    "iceman",
    "jordan",
    "killer",
    "letmein",
    "monkey",
    "ninja",
    "orange",
    "password1",
    "qwerty",
    "rocket",
    "shadow",
    "trustno1",
];
const TIMEZONES: &[(&str, &str)] = &[
    ("-12:00", "Eniwetok, Kwajalein"),
    ("-10:00", "Hawaii"),
    ("-8:00", "Pacific Time (US & Canada)"),
    ("-5:00", "Eastern Time (US & Canada), Bogota, Lima"),
    ("-3:00", "Brazil, Buenos Aires, Georgetown"),
    ("0:00", "Western Europe Time, London, Lisbon, Casablanca"),
    ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    ("+2:00", "Kaliningrad, South Africa"),
    ("+3:30", "Tehran"),
    ("+5:30", "Bombay, Calcutta, Madras, New Delhi"),
    ("+9:30", "Adelaide, Darwin"),
    ("+10:00", "Eastern Australia, Guam, Vladivostok"),
];

/// 2025-01-01T00:00:00Z: ages are counted to this fixed day, so a seed's users
/// do not change as the calendar moves on.
const AGE_REFERENCE_MS: i64 = 1_735_689_600_000;
const YEAR_MS: i64 = 31_556_952_000;

/// A deterministic source of API users.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: String,
    seed_hash: u64,
    nats: Vec<&'static Nationality>,
    gender: Option<Gender>,
}

impl Generator {
    /// `nats` empty means all 21 nationalities.
    pub fn new(seed: &str, nats: Vec<&'static Nationality>, gender: Option<Gender>) -> Self {
        let nats = if nats.is_empty() {
            NATIONALITIES.iter().collect()
        } else {
            nats
        };
        Generator {
            seed: seed.to_owned(),
            seed_hash: hash_seed(seed),
            nats,
            gender,
        }
    }

    pub fn seed(&self) -> &str {
        &self.seed
    }

    /// Users `(page-1)*results .. page*results` of this seed's sequence.
    pub fn page(&self, page: u64, results: u64) -> Vec<ApiUser> {
        let start = page.saturating_sub(1).saturating_mul(results);
        (start..start.saturating_add(results))
            .map(|k| self.user(k))
            .collect()
    }

    /// The `index`-th user of this seed's sequence.
    pub fn user(&self, index: u64) -> ApiUser {
        let mut r = Stream(self.seed_hash ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        let nat = *r.pick(&self.nats);
        let gender = self.gender.unwrap_or(if r.below(2) == 0 {
            Gender::Female
        } else {
            Gender::Male
        });
        let (title, first, portraits) = match gender {
            Gender::Female => (r.pick(TITLES_FEMALE), r.pick(nat.female_first), "women"),
            Gender::Male => (r.pick(TITLES_MALE), r.pick(nat.male_first), "men"),
        };
        let last = *r.pick(nat.last);
        let (city, state) = *r.pick(nat.cities);
        let postcode = match nat.postcode {
            PostcodeFormat::Number(digits) => {
                let low = 10u64.pow(u32::from(digits.max(1)) - 1);
                Scalar::Number((low + r.below(9 * low)).into())
            }
            PostcodeFormat::Pattern(p) => Scalar::Text(r.pattern(p)),
        };
        let (tz_offset, tz_description) = *r.pick(TIMEZONES);
        let mut uuid_bytes = [0u8; 16];
        uuid_bytes[..8].copy_from_slice(&r.next().to_le_bytes());
        uuid_bytes[8..].copy_from_slice(&r.next().to_le_bytes());
        let uuid = uuid::Builder::from_random_bytes(uuid_bytes).into_uuid();
        let born_ms = AGE_REFERENCE_MS - 18 * YEAR_MS - (r.below(60 * YEAR_MS as u64) as i64);
        let registered_ms = AGE_REFERENCE_MS - (r.below(20 * YEAR_MS as u64) as i64);
        let picture = r.below(100);
        let email_local = format!("{first}.{last}")
            .to_lowercase()
            .replace([' ', '\''], "");
        ApiUser {
            gender: Some(
                match gender {
                    Gender::Female => "female",
                    Gender::Male => "male",
                }
                .to_owned(),
            ),
            name: Some(ApiName {
                title: Some((*title).to_owned()),
                first: Some((*first).to_owned()),
                last: Some(last.to_owned()),
            }),
            location: Some(ApiLocation {
                street: Some(ApiStreet::Structured {
                    number: Some(Scalar::Number((1 + r.below(9999)).into())),
                    name: Some((*r.pick(nat.streets)).to_owned()),
                }),
                city: Some(city.to_owned()),
                state: Some(state.to_owned()),
                country: Some(nat.country.to_owned()),
                postcode: Some(postcode),
                coordinates: Some(ApiCoordinates {
                    latitude: Some(Scalar::Text(degrees(r.below(1_800_000), 90))),
                    longitude: Some(Scalar::Text(degrees(r.below(3_600_000), 180))),
                }),
                timezone: Some(ApiTimezone {
                    offset: Some(tz_offset.to_owned()),
                    description: Some(tz_description.to_owned()),
                }),
            }),
            email: Some(format!("{email_local}@example.com")),
            login: Some(ApiLogin {
                uuid: Some(uuid.hyphenated().to_string()),
                username: Some(format!(
                    "{}{}{}",
                    r.pick(ADJECTIVES),
                    r.pick(ANIMALS),
                    100 + r.below(900)
                )),
                password: Some((*r.pick(PASSWORDS)).to_owned()),
                salt: Some(r.hex(8)),
                // Random hex of the right lengths, not real digests: nothing
                // downstream checks them and hashing would cost the benchmark.
                md5: Some(r.hex(32)),
                sha1: Some(r.hex(40)),
                sha256: Some(r.hex(64)),
            }),
            dob: Some(ApiDate::Structured {
                date: Some(iso8601_millis(born_ms)),
                age: Some(((AGE_REFERENCE_MS - born_ms) / YEAR_MS) as u32),
            }),
            registered: Some(ApiDate::Structured {
                date: Some(iso8601_millis(registered_ms)),
                age: Some(((AGE_REFERENCE_MS - registered_ms) / YEAR_MS) as u32),
            }),
            phone: Some(r.pattern(nat.phone)),
            cell: Some(r.pattern(nat.cell)),
            id: Some(ApiId {
                name: Some(nat.id_name.to_owned()),
                value: nat.id_value.map(|p| r.pattern(p)),
            }),
            picture: Some(ApiPicture {
                large: Some(format!(
                    "https://randomuser.me/api/portraits/{portraits}/{picture}.jpg"
                )),
                medium: Some(format!(
                    "https://randomuser.me/api/portraits/med/{portraits}/{picture}.jpg"
                )),
                thumbnail: Some(format!(
                    "https://randomuser.me/api/portraits/thumb/{portraits}/{picture}.jpg"
                )),
            }),
            nat: Some(nat.code.to_owned()),
        }
    }
}

/// A fresh random seed in the API's style (16 hex digits), for runs that were
/// given none; it is printed so the run can be repeated.
pub fn random_seed() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_users() {
        let a = Generator::new("42", vec![], None);
        let b = Generator::new("42", vec![], None);
        assert_eq!(a.page(3, 50), b.page(3, 50));
        let c = Generator::new("43", vec![], None);
        assert_ne!(a.user(0).login.unwrap().uuid, c.user(0).login.unwrap().uuid);
    }

    #[test]
    fn pages_tile_the_sequence() {
        let g = Generator::new("7", vec![], None);
        let whole = g.page(1, 30);
        let mut tiled = g.page(1, 10);
        tiled.extend(g.page(2, 10));
        tiled.extend(g.page(3, 10));
        assert_eq!(whole, tiled);
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let g = Generator::new("distinct", vec![], None);
        let ids: std::collections::HashSet<_> = g
            .page(1, 20_000)
            .into_iter()
            .map(|u| u.to_row().unwrap().id)
            .collect();
        assert_eq!(ids.len(), 20_000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
    }

    #[test]
    fn pinned_output_does_not_drift() {
        // A seed names the same users forever: this pins the algorithm. If
        // this fails, existing users' seeds now name other people.
        let row = Generator::new("42", vec![], None).user(0).to_row().unwrap();
        assert_eq!(row.id.to_string(), "4193c4e2-482d-41d2-9add-3a8095c3f7a1");
        assert_eq!(row.first_name, "Ximena");
        assert_eq!(row.last_name, "Beltrán");
        assert_eq!(
            row.address,
            "7727 Privada Zaragoza, Tampico, Tamaulipas, Mexico"
        );
        assert_eq!(row.dob, "2006-08-18T17:30:33.198Z");
    }

    #[test]
    fn coordinates_have_four_decimals_and_a_sign() {
        assert_eq!(degrees(0, 90), "-90.0000");
        assert_eq!(degrees(201_754, 90), "-69.8246");
        assert_eq!(degrees(900_000, 90), "0.0000");
        assert_eq!(degrees(3_148_719, 180), "134.8719");
    }

    #[test]
    fn nationality_and_gender_filters_hold() {
        let nats = vec![by_code("IR").unwrap(), by_code("UA").unwrap()];
        let g = Generator::new("s", nats, Some(Gender::Female));
        let mut non_ascii = 0;
        for u in g.page(1, 200) {
            assert!(matches!(u.nat.as_deref(), Some("IR" | "UA")));
            assert_eq!(u.gender.as_deref(), Some("female"));
            let row = u.to_row().unwrap();
            if !row.first_name.is_ascii() {
                non_ascii += 1;
            }
        }
        assert!(non_ascii > 100, "{non_ascii}");
    }

    #[test]
    fn every_generated_user_flattens() {
        let g = Generator::new("all", vec![], None);
        for u in g.page(1, 5_000) {
            u.to_row().expect("generated users are complete");
        }
    }
}
