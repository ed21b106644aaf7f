//! Django 5.2's default password validators and username validation, with Django's exact
//! (English) messages.
//!
//! Ported from `django/contrib/auth/password_validation.py`, `django/contrib/auth/validators.py`
//! and DRF 3.x `CharField`. Python semantics that Rust does not share are reproduced on purpose:
//!
//! * Lengths are counted in Unicode code points (`len()` on a Python `str`).
//! * Python's `\w` on `str` patterns is exactly `[\p{L}\p{N}_]` (checked over every code point
//!   against CPython 3.11's `re`); Rust's own `\w` differs (it includes marks, excludes `No`).
//! * `str.strip()` also strips U+001C..U+001F, which `char::is_whitespace` does not.
//! * `str.isdigit()` is Numeric_Type=Decimal or Digit: `\p{Nd}` plus [`PY_EXTRA_DIGITS`].
//! * `str.lower()` is `str::to_lowercase` (both apply full mappings and the final-sigma rule).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::LazyLock;

use flate2::read::GzDecoder;
use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// The user attributes UserAttributeSimilarityValidator compares against (Django's defaults:
/// username, first_name, last_name, email with verbose names "username", "first name",
/// "last name", "email address").
pub struct UserAttributes<'a> {
    pub username: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
}

/// `AUTH_PASSWORD_VALIDATORS` option values from Django's `startproject` template.
const MAX_SIMILARITY: f64 = 0.7;
const MIN_LENGTH: usize = 8;
/// `AbstractUser.username` has `max_length=150`.
const USERNAME_MAX_LENGTH: usize = 150;

const MSG_COMMON: &str = "This password is too common.";
const MSG_NUMERIC: &str = "This password is entirely numeric.";
const MSG_USERNAME_INVALID: &str = "Enter a valid username. This value may contain only letters, \
                                    numbers, and @/./+/-/_ characters.";
const MSG_BLANK: &str = "This field may not be blank.";
const MSG_NULL: &str = "Null characters are not allowed.";

/// Django's list (`django/contrib/auth/common-passwords.txt.gz`, 19,640 lowercased entries).
static COMMON_PASSWORDS_GZ: &[u8] = include_bytes!("common-passwords.txt.gz");
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| decode_password_list(COMMON_PASSWORDS_GZ));

/// Characters with Numeric_Type=Digit (not Decimal), which `str.isdigit()` also accepts:
/// superscripts, circled/parenthesized digits, Ethiopic digits, ... (Unicode 14, as CPython 3.11).
#[rustfmt::skip]
const PY_EXTRA_DIGITS: &[(char, char)] = &[
    ('\u{B2}', '\u{B3}'), ('\u{B9}', '\u{B9}'), ('\u{1369}', '\u{1371}'), ('\u{19DA}', '\u{19DA}'), ('\u{2070}', '\u{2070}'),
    ('\u{2074}', '\u{2079}'), ('\u{2080}', '\u{2089}'), ('\u{2460}', '\u{2468}'), ('\u{2474}', '\u{247C}'), ('\u{2488}', '\u{2490}'),
    ('\u{24EA}', '\u{24EA}'), ('\u{24F5}', '\u{24FD}'), ('\u{24FF}', '\u{24FF}'), ('\u{2776}', '\u{277E}'), ('\u{2780}', '\u{2788}'),
    ('\u{278A}', '\u{2792}'), ('\u{10A40}', '\u{10A43}'), ('\u{10E60}', '\u{10E68}'), ('\u{11052}', '\u{1105A}'), ('\u{1F100}', '\u{1F10A}'),
];

/// Runs Django's four startproject validators in Django's order (UserAttributeSimilarity(max_similarity 0.7),
/// MinimumLength(8), CommonPassword, NumericPassword) and returns ALL failure messages in that order,
/// e.g. "1234" -> ["This password is too short. It must contain at least 8 characters.", "This password is too common.", "This password is entirely numeric."].
pub fn validate_password(password: &str, user: &UserAttributes<'_>) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(verbose_name) = too_similar_attribute(password, user) {
        errors.push(format!("The password is too similar to the {verbose_name}."));
    }
    if password.chars().count() < MIN_LENGTH {
        errors.push(min_length_message(MIN_LENGTH));
    }
    // Django lowercases *before* stripping; the list itself is stored lowercased and stripped.
    if COMMON_PASSWORDS.contains(py_strip(&password.to_lowercase())) {
        errors.push(MSG_COMMON.to_owned());
    }
    if py_isdigit(password) {
        errors.push(MSG_NUMERIC.to_owned());
    }
    errors
}

/// Django's UnicodeUsernameValidator + max_length 150 as a DRF ModelSerializer reports them.
///
/// Mirrors DRF's `CharField` pipeline for `User.username`: the raw value is trimmed
/// (`trim_whitespace=True`, Python `str.strip()`), an all-whitespace/empty value yields only
/// "This field may not be blank.", then ALL validators run in DRF's order and their messages
/// are collected: `UnicodeUsernameValidator`, `MaxLengthValidator(150)`,
/// `ProhibitNullCharactersValidator`. (DRF's surrogate check cannot fire on a Rust `&str`;
/// the DB-backed uniqueness check is the caller's job.)
///
/// On success returns the NFKC form (`AbstractBaseUser.normalize_username`). The characters
/// are checked before normalization, as DRF does ('½' passes and is stored as "1⁄2"); the
/// length after it too, as Django's `UsernameField` does: NFKC can lengthen a name (U+FDFA
/// becomes 18 characters), and what is stored must fit the 150-character column (DRF
/// checks the raw value only, and PostgreSQL then refuses the row with a 500).
///
/// # Errors
///
/// Every applicable DRF message, in DRF's order (see above).
pub fn validate_username(raw: &str) -> Result<String, Vec<String>> {
    let value = py_strip(raw);
    if value.is_empty() {
        return Err(vec![MSG_BLANK.to_owned()]);
    }
    let normalized: String = value.nfkc().collect();
    let mut errors = Vec::new();
    // `^[\w.@+-]+\Z`: non-empty is already guaranteed above.
    if !value.chars().all(|c| is_py_word_char(c) || ".@+-".contains(c)) {
        errors.push(MSG_USERNAME_INVALID.to_owned());
    }
    if value.chars().count().max(normalized.chars().count()) > USERNAME_MAX_LENGTH {
        errors.push(format!("Ensure this field has no more than {USERNAME_MAX_LENGTH} characters."));
    }
    if value.contains('\0') {
        errors.push(MSG_NULL.to_owned());
    }
    if errors.is_empty() { Ok(normalized) } else { Err(errors) }
}

/// `MinimumLengthValidator.get_error_message()`; English `ngettext` uses the singular only for 1.
fn min_length_message(min_length: usize) -> String {
    if min_length == 1 {
        format!("This password is too short. It must contain at least {min_length} character.")
    } else {
        format!("This password is too short. It must contain at least {min_length} characters.")
    }
}

/// `UserAttributeSimilarityValidator.validate`: returns the verbose name of the first attribute
/// (in Django's attribute order) that is too similar; Django raises on the first hit, so at
/// most one similarity message is ever produced.
fn too_similar_attribute(password: &str, user: &UserAttributes<'_>) -> Option<&'static str> {
    let password: Vec<char> = password.to_lowercase().chars().collect();
    let attributes = [
        (user.username, "username"),
        (user.first_name, "first name"),
        (user.last_name, "last name"),
        (user.email, "email address"),
    ];
    attributes.into_iter().find_map(|(value, verbose_name)| {
        if value.is_empty() {
            return None; // `if not value: continue`
        }
        let value_lower = value.to_lowercase();
        // `re.split(r"\W+", value_lower) + [value_lower]`
        let mut parts = split_non_word(&value_lower);
        parts.push(&value_lower);
        parts
            .into_iter()
            .any(|part| {
                let part: Vec<char> = part.chars().collect();
                !exceeds_maximum_length_ratio(password.len(), MAX_SIMILARITY, part.len())
                    && quick_ratio(&password, &part) >= MAX_SIMILARITY
            })
            .then_some(verbose_name)
    })
}

/// Django's shortcut: a value far shorter than the password can never reach the threshold.
/// Note that an empty part is *not* skipped for an empty password (0 < 0 is false), and
/// `quick_ratio` of two empty sequences is 1.0, so an empty password is "too similar" to any
/// attribute with a leading or trailing non-word character (e.g. username "john.").
fn exceeds_maximum_length_ratio(pwd_len: usize, max_similarity: f64, value_len: usize) -> bool {
    let length_bound_similarity = max_similarity / 2.0 * pwd_len as f64;
    pwd_len >= 10 * value_len && (value_len as f64) < length_bound_similarity
}

/// `difflib.SequenceMatcher(a=a, b=b).quick_ratio()`: 2 * |multiset intersection| / (|a| + |b|),
/// 1.0 when both are empty (`difflib._calculate_ratio`). Junk heuristics do not apply here.
fn quick_ratio(a: &[char], b: &[char]) -> f64 {
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let mut available: HashMap<char, usize> = HashMap::new();
    for &c in b {
        *available.entry(c).or_default() += 1;
    }
    let matches = a
        .iter()
        .filter(|c| match available.get_mut(c) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count();
    2.0 * matches as f64 / total as f64
}

/// `re.split(r"\W+", s)`: splits on maximal runs of non-word characters, keeping the empty
/// leading/trailing pieces Python produces (".a." -> ["", "a", ""]; "" -> [""]).
fn split_non_word(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_separator = false;
    for (i, c) in s.char_indices() {
        if is_py_word_char(c) {
            if in_separator {
                start = i;
                in_separator = false;
            }
        } else if !in_separator {
            parts.push(&s[start..i]);
            in_separator = true;
        }
    }
    parts.push(if in_separator { "" } else { &s[start..] });
    parts
}

/// Python `str.strip()` with no argument: `str.isspace()` characters, which are Rust's
/// `White_Space` set plus the information separators U+001C..U+001F.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c))
}

/// Python `str.isdigit()`: non-empty and every char is Numeric_Type Decimal (`\p{Nd}`) or Digit.
/// So '²' and Arabic-Indic '٣' count as digits, while '½' and 'Ⅻ' do not.
fn py_isdigit(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            char_in_class(&DECIMAL_CLASS, c).unwrap_or(c.is_ascii_digit())
                || PY_EXTRA_DIGITS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
        })
}

/// Python's `\w` for `str` patterns (`str.isalnum()` or `_`), i.e. exactly `[\p{L}\p{N}_]`.
fn is_py_word_char(c: char) -> bool {
    char_in_class(&WORD_CLASS, c).unwrap_or_else(|| c.is_alphanumeric() || c == '_')
}

// The regex crate is only used for its Unicode general-category tables, which std lacks. The
// patterns are constants (a unit test proves they compile), so the `None` fallbacks to the
// nearest std predicates exist only to satisfy the crate's no-unwrap policy.
static WORD_CLASS: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A[\p{L}\p{N}_]\z").ok());
static DECIMAL_CLASS: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{Nd}\z").ok());

fn char_in_class(class: &LazyLock<Option<Regex>>, c: char) -> Option<bool> {
    let mut buf = [0u8; 4];
    class.as_ref().map(|re| re.is_match(c.encode_utf8(&mut buf)))
}

/// Django builds the set with `{x.strip() for x in f}`. A corrupt embedded file (impossible
/// unless the build is broken, and covered by a test) degrades to an empty list, not a panic.
fn decode_password_list(gz: &[u8]) -> HashSet<String> {
    let mut text = String::new();
    if GzDecoder::new(gz).read_to_string(&mut text).is_err() {
        return HashSet::new();
    }
    text.lines().map(|line| py_strip(line).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOO_SHORT: &str = "This password is too short. It must contain at least 8 characters.";
    const SIMILAR_USERNAME: &str = "The password is too similar to the username.";
    const MAX_150: &str = "Ensure this field has no more than 150 characters.";

    #[rustfmt::skip]
    fn user<'a>(username: &'a str, first_name: &'a str, last_name: &'a str, email: &'a str) -> UserAttributes<'a> {
        UserAttributes { username, first_name, last_name, email }
    }

    /// Expands the one-letter codes used by the Django-generated tables below.
    fn expand(codes: &str) -> Vec<String> {
        let similar = |name: &str| format!("The password is too similar to the {name}.");
        codes
            .chars()
            .map(|code| match code {
                'U' => similar("username"),
                'F' => similar("first name"),
                'A' => similar("last name"),
                'E' => similar("email address"),
                'L' => TOO_SHORT.to_owned(),
                'C' => MSG_COMMON.to_owned(),
                'N' => MSG_NUMERIC.to_owned(),
                'I' => MSG_USERNAME_INVALID.to_owned(),
                'M' => MAX_150.to_owned(),
                'B' => MSG_BLANK.to_owned(),
                'Z' => MSG_NULL.to_owned(),
                other => panic!("unknown code {other}"),
            })
            .collect()
    }

    /// Generated by running Django 5.2.19's `validate_password` (the four startproject
    /// validators) on an unsaved `User`: (password, username, first, last, email, codes).
    #[rustfmt::skip]
    const DJANGO_PASSWORDS: &[(&str, &str, &str, &str, &str, &str)] = &[
        ("\u{A0}1234567891011", "john", "John", "Smith", "john.smith@example.com", "C"),
        ("ArmaGedon", "zz", "\u{3A9}mega", "\u{141}ukasz", "lu@x.pl", "C"),
        ("\u{A}1mUsTANg", "alice_w", "", "", "", "C"),
        ("585\u{216B}84\u{2460}7", "john", "John", "Smith", "john.smith@example.com", ""),
        ("\u{663}542\u{2460}", "john", "John", "Smith", "john.smith@example.com", "LN"),
        ("2\u{B2}\u{B2}472\u{B2}0198", "john.", "", "", "", "N"),
        ("honJ", "john", "John", "Smith", "john.smith@example.com", "UL"),
        ("f\u{3A9}MEGA", "zz", "\u{3A9}mega", "\u{141}ukasz", "lu@x.pl", "FL"),
        ("w_ecilatfq", "alice_w", "", "", "", "U"),
        ("lemeh.ox.st@aihmmocnjpryikvio", "john", "John", "Smith", "john.smith@example.com", "E"),
        ("\u{301}+\u{663}", "john", "John", "Smith", "john.smith@example.com", "L"),
        ("_\u{436}1zb_\u{2460}1x2\u{B2}", "john", "John", "Smith", "john.smith@example.com", ""),
        ("\u{3A3}+\u{3C3}x\u{FC}", "john.", "", "", "", "L"),
        ("\u{203F}\u{FF4A}1\u{E9}z\u{3C2}\u{131}", "zz", "\u{3A9}mega", "\u{141}ukasz", "lu@x.pl", "L"),
        ("johnsmith1", "john", "John", "Smith", "john.smith@example.com", ""),
        ("smith123", "john", "John", "Smith", "john.smith@example.com", "AC"),
        ("smith123", "", "", "", "john.smith@example.com", "EC"),
        ("JOHN2024x", "john", "", "", "", ""),
        ("", "john", "", "", "", "L"),
        ("\u{130}\u{130}\u{130}\u{130}", "i\u{307}i\u{307}", "", "", "", "L"),
        ("\u{39F}\u{394}\u{39F}\u{3A3}", "", "", "\u{3BF}\u{3B4}\u{3BF}\u{3C3}", "", "AL"),
        ("\u{41F}\u{430}\u{440}\u{43E}\u{43B}\u{44C}", "zz", "", "", "", "LC"),
        ("\u{B2}\u{B2}\u{B2}\u{B2}\u{B2}\u{B2}\u{B2}\u{B2}", "zz", "", "", "", "N"),
        ("\u{BD}\u{BD}\u{BD}\u{BD}\u{BD}\u{BD}\u{BD}\u{BD}", "zz", "", "", "", ""),
        ("\u{1C}qwerty\u{1D}", "zz", "", "", "", "C"),
        ("abcdefghijklmnopqrstuvwxyzabcdefghij", "abcd", "", "", "", ""),
        ("friend of emily", "zz", "", "", "", "C"),
    ];

    /// Generated with DRF 3.18 `ModelSerializer(model=User, fields=["username"])` followed by
    /// `User.normalize_username` on the validated value.
    #[rustfmt::skip]
    const DJANGO_USERNAMES: &[(&str, Result<&str, &str>)] = &[
        ("", Err("B")),
        ("\u{1C}", Err("B")),
        ("a\u{0}b", Err("IZ")),
        ("e\u{301}", Err("I")),
        ("\u{E9}", Ok("\u{E9}")),
        ("john\u{A}", Ok("john")),
        ("\u{2167}", Ok("VIII")),
        ("\u{BD}", Ok("1\u{2044}2")),
        ("user@example.com", Ok("user@example.com")),
        ("\u{FF2A}\u{FF4F}\u{FF48}\u{FF4E}", Ok("John")),
        ("a\u{2003}b", Err("I")),
        ("\u{B2}", Ok("2")),
        ("\u{203F}", Err("I")),
        ("\u{BD}y", Ok("1\u{2044}2y")),
        ("c\u{416}\u{BD}9y\u{FF4A}--\u{130} ", Ok("c\u{416}1\u{2044}29yj--\u{130}")),
        ("\u{1C}++c..-.+ ", Ok("++c..-.+")),
    ];

    #[test]
    fn matches_django_password_table() {
        for &(password, username, first, last, email, codes) in DJANGO_PASSWORDS {
            let got = validate_password(password, &user(username, first, last, email));
            assert_eq!(got, expand(codes), "{password:?} {username:?}");
        }
    }

    #[test]
    fn matches_django_username_table() {
        for &(raw, expected) in DJANGO_USERNAMES {
            let expected = expected.map(str::to_owned).map_err(expand);
            assert_eq!(validate_username(raw), expected, "username {raw:?}");
        }
    }

    #[test]
    fn documented_examples() {
        let john = user("john", "", "", "");
        assert_eq!(validate_password("password123", &john), [MSG_COMMON]);
        let all_three = [TOO_SHORT, MSG_COMMON, MSG_NUMERIC];
        assert_eq!(validate_password("1234", &john), all_three);
        assert!(validate_password("correct horse battery staple", &john).is_empty());
    }

    #[test]
    fn similarity_thresholds() {
        let email = user("", "", "", "john.smith@example.com");
        // "smith" part: 2*5/(9+5) = 0.714 >= 0.7.
        let similar = "The password is too similar to the email address.";
        assert_eq!(validate_password("johnsmith", &email), [similar]);
        // Best part "smith": 2*5/(10+5) = 0.667; the full address: 2*10/32 = 0.625.
        assert!(validate_password("john.smith", &email).is_empty());
        assert!(validate_password("johnsmith1", &email).is_empty());
        // Only the first similar attribute is reported, in Django's attribute order.
        let smiths = user("smith", "", "smith", "smith@example.com");
        assert_eq!(validate_password("smith123x", &smiths), [SIMILAR_USERNAME]);
    }

    #[test]
    fn similarity_helpers_follow_difflib() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(quick_ratio(&[], &[]), 1.0);
        assert_eq!(quick_ratio(&chars("a"), &[]), 0.0);
        assert_eq!(quick_ratio(&chars("aab"), &chars("abb")), 2.0 * 2.0 / 6.0);
        assert!(!exceeds_maximum_length_ratio(0, 0.7, 0));
        assert!(exceeds_maximum_length_ratio(1, 0.7, 0));
        assert!(exceeds_maximum_length_ratio(30, 0.7, 3));
        assert!(!exceeds_maximum_length_ratio(29, 0.7, 3));
        assert_eq!(split_non_word(".a..b_c."), ["", "a", "b_c", ""]);
        assert_eq!(split_non_word(""), [""]);
        assert_eq!(split_non_word("ab"), ["ab"]);
        // Empty password vs the empty piece of "john." => ratio 1.0 (Django quirk).
        let msgs = validate_password("", &user("john.", "", "", ""));
        assert_eq!(msgs, [SIMILAR_USERNAME, TOO_SHORT]);
    }

    #[test]
    fn min_length_message_forms() {
        let singular = "This password is too short. It must contain at least 1 character.";
        assert_eq!(min_length_message(1), singular);
        assert_eq!(min_length_message(8), TOO_SHORT);
        assert!(min_length_message(0).ends_with("at least 0 characters."));
        // Code points, not bytes: 8 two-byte chars pass.
        assert!(validate_password("éééééééé", &user("zz", "", "", "")).is_empty());
    }

    #[test]
    fn python_string_semantics() {
        assert_eq!(py_strip("\u{1c}\u{3000} a b\u{85}\u{1f}"), "a b");
        assert!(py_isdigit("0123٣²①"));
        assert!(!py_isdigit("½") && !py_isdigit("Ⅻ") && !py_isdigit("") && !py_isdigit("1 2"));
        for c in ['a', 'Ж', '_', '٣', '²', '½', 'Ⅻ', '一'] {
            assert!(is_py_word_char(c), "{c:?}");
        }
        // Marks, connector punctuation other than '_', and symbols are not `\w` in Python.
        for c in ['\u{301}', '\u{203f}', '-', '😀', ' ', '\0'] {
            assert!(!is_py_word_char(c), "{c:?}");
        }
        assert!(WORD_CLASS.is_some() && DECIMAL_CLASS.is_some());
    }

    #[test]
    fn embedded_common_password_list_decodes() {
        let list = decode_password_list(COMMON_PASSWORDS_GZ);
        assert_eq!(list.len(), 19_640);
        assert!(list.contains("password") && list.contains("пароль"));
        assert!(list.contains("friend of emily"));
        assert!(decode_password_list(b"not gzip").is_empty());
    }

    #[test]
    fn username_lengths_and_normalization() {
        let a150 = "a".repeat(150);
        assert_eq!(validate_username(&a150), Ok(a150.clone()));
        assert_eq!(validate_username(&format!(" {a150}\n")), Ok(a150.clone()));
        assert_eq!(validate_username(&format!("{a150}a")), Err(vec![MAX_150.to_owned()]));
        let both = vec![MSG_USERNAME_INVALID.to_owned(), MAX_150.to_owned()];
        assert_eq!(validate_username(&"a b".repeat(60)), Err(both.clone()));
        // The length counts after NFKC too: U+FDFA becomes 18 characters, U+FB03 "ffi".
        assert_eq!(validate_username(&"\u{fdfa}".repeat(9)), Err(vec![MAX_150.to_owned()]));
        assert_eq!(validate_username(&"\u{fdfa}".repeat(8)).map(|s| s.chars().count()), Ok(144));
        assert_eq!(validate_username(&"\u{fb03}".repeat(50)).map(|s| s.len()), Ok(150));
        assert_eq!(validate_username(&"\u{fb03}".repeat(51)), Err(vec![MAX_150.to_owned()]));
        assert_eq!(validate_username("Ｊｏｈｎ"), Ok("John".to_owned()));
    }
}
