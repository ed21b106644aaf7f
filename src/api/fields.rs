//! DRF serializer fields, for the few types our bodies have: each check and message is
//! DRF's (`CharField`, `BooleanField`), and all failures are collected into one field map.
use serde_json::{Map, Value};

use crate::{error::ApiError, password::validators::py_strip, service::FieldErrors};

pub const REQUIRED: &str = "This field is required.";
pub const NULL: &str = "This field may not be null.";
pub const BLANK: &str = "This field may not be blank.";
pub const NOT_A_STRING: &str = "Not a valid string.";
const NULL_CHARACTERS: &str = "Null characters are not allowed.";

/// How a `CharField` is declared.
#[derive(Debug, Clone, Copy)]
pub struct Char {
    pub required: bool,
    pub allow_blank: bool,
    /// DRF's `trim_whitespace` (on by default; off for passwords, which Django never strips).
    pub trim: bool,
    pub max_length: Option<usize>,
}

impl Char {
    pub const REQUIRED: Self = Self { required: true, allow_blank: false, trim: true, max_length: None };
    pub const OPTIONAL: Self = Self { required: false, allow_blank: true, trim: true, max_length: None };
    pub const PASSWORD: Self = Self { required: true, allow_blank: false, trim: false, max_length: None };

    pub const fn max(self, max_length: usize) -> Self {
        Self { max_length: Some(max_length), ..self }
    }
}

/// The body being validated and the errors found so far.
pub struct Fields<'a> {
    pub data: &'a Map<String, Value>,
    pub errors: FieldErrors,
}

impl<'a> Fields<'a> {
    /// DRF answers a body that is not an object with a `non_field_errors` entry.
    pub fn new(data: &'a Value) -> Result<Self, ApiError> {
        match data {
            Value::Object(map) => Ok(Self { data: map, errors: FieldErrors::default() }),
            other => Err(ApiError::Validation(FieldErrors::single(
                "non_field_errors",
                format!("Invalid data. Expected a dictionary, but got {}.", python_type(other)),
            ))),
        }
    }

    /// A `CharField`: the value, or `""` when it is absent or invalid (then an error is recorded).
    pub fn char(&mut self, name: &str, spec: Char) -> String {
        match self.check_char(name, spec) {
            Ok(value) => value,
            Err(message) => {
                if let Some(message) = message {
                    self.errors.add(name, message);
                }
                String::new()
            }
        }
    }

    fn check_char(&self, name: &str, spec: Char) -> Result<String, Option<String>> {
        let raw = match self.data.get(name) {
            None if spec.required => return Err(Some(REQUIRED.into())),
            None => return Err(None),
            Some(Value::Null) => return Err(Some(NULL.into())),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(Some(NOT_A_STRING.into())),
        };
        let value = if spec.trim { py_strip(&raw).to_owned() } else { raw };
        if value.is_empty() {
            return if spec.allow_blank { Ok(value) } else { Err(Some(BLANK.into())) };
        }
        if let Some(max) = spec.max_length
            && value.chars().count() > max
        {
            return Err(Some(crate::service::users::max_length_message(max)));
        }
        if value.contains('\0') {
            return Err(Some(NULL_CHARACTERS.into()));
        }
        Ok(value)
    }
}

/// The Python type name DRF's message shows.
fn python_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn char_fields_follow_drf() {
        let data = json!({"a": " x ", "n": 12, "b": true, "z": null, "e": "  ", "long": "abcd", "nul": "a\u{0}b", "py": "\u{1c}y\u{85}", "py_blank": "\u{1f}\u{3000}"});
        let mut f = Fields::new(&data).unwrap();
        assert_eq!(f.char("a", Char::REQUIRED), "x");
        assert_eq!(f.char("n", Char::REQUIRED), "12");
        assert_eq!(f.char("b", Char::REQUIRED), "");
        assert_eq!(f.char("z", Char::REQUIRED), "");
        assert_eq!(f.char("e", Char::REQUIRED), "");
        assert_eq!(f.char("long", Char::REQUIRED.max(3)), "");
        assert_eq!(f.char("nul", Char::REQUIRED), "");
        assert_eq!(f.char("py", Char::REQUIRED), "y");
        assert_eq!(f.char("py_blank", Char::REQUIRED), "");
        assert_eq!(f.char("missing", Char::REQUIRED), "");
        assert_eq!(f.char("missing2", Char::OPTIONAL), "");
        assert_eq!(
            f.errors.to_json(),
            json!({
                "b": [NOT_A_STRING], "z": [NULL], "e": [BLANK], "py_blank": [BLANK],
                "long": ["Ensure this field has no more than 3 characters."],
                "nul": ["Null characters are not allowed."], "missing": [REQUIRED]
            })
        );
    }

    /// The spec's pattern for a trimmed, required key (`VerifyEmailRequest.key`) accepts a
    /// character alone exactly when `str.strip()` keeps it: a fuzzer that trusts the spec never
    /// sends a value the server calls blank (Schemathesis found U+0085 when the pattern said `\s`).
    #[test]
    fn the_spec_pattern_for_trimmed_keys_is_pythons_whitespace() {
        let spec: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
        let pattern =
            spec["components"]["schemas"]["VerifyEmailRequest"]["properties"]["key"]["pattern"].as_str().unwrap();
        let re = regex::Regex::new(pattern).unwrap();
        for c in (1..=0x10FFFF).filter_map(char::from_u32) {
            let alone = c.to_string();
            assert_eq!(re.is_match(&alone), !py_strip(&alone).is_empty(), "U+{:04X}", c as u32);
        }
        assert!(re.is_match(" \u{85}k\u{3000}"));
        assert!(!re.is_match("k\u{0}"));
    }

    #[test]
    fn non_objects_are_refused_with_the_python_type() {
        let Err(ApiError::Validation(e)) = Fields::new(&json!([1])) else { panic!() };
        assert_eq!(e.to_json(), json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}));
    }
}
