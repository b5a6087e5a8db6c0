//! `portable_json`: the cross-language encoding of every value this library writes.
//!
//! Inputs are `{"positionalArgs":[...],"namedArgs":{...}}`, outputs are the JSON value
//! itself, errors are `{"name","message","code","data"}`. Rows in any other encoding
//! (`py_pickle`, `DBOS_JSON`, a custom serializer) are reported, never misread.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

/// The value of the `serialization` column for rows this library writes.
pub const PORTABLE_JSON: &str = "portable_json";

/// Encodes a value as compact JSON text.
///
/// # Errors
/// [`ErrorKind::Serialization`] when the value's `Serialize` implementation fails (for example
/// a map with non-string keys).
pub fn to_text<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!("could not encode a value as portable JSON: {e}"),
        )
        .with_source(e)
    })
}

/// Encodes a value as a JSON tree.
///
/// # Errors
/// As [`to_text`].
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!("could not encode a value as portable JSON: {e}"),
        )
        .with_source(e)
    })
}

/// Checks that a row's `serialization` column names an encoding this library can read.
///
/// `NULL` is accepted for JSON text (rows written by value-less operations), anything else
/// but `portable_json` is an error naming the encoding and who writes it.
///
/// # Errors
/// [`ErrorKind::Serialization`] for a foreign encoding.
pub fn check_serialization(serialization: Option<&str>, what: &str) -> Result<()> {
    match serialization {
        None | Some(PORTABLE_JSON) => Ok(()),
        Some(other) => {
            let writer = match other {
                "py_pickle" => " (DBOS Python's default pickle serializer; enqueue with serialization_type=PORTABLE instead)",
                "DBOS_JSON" | "DBOS_GOB" => " (DBOS Go's native serializer; use its portable options instead)",
                "js_superjson" | "js_legacy" => " (DBOS TypeScript's native serializer)",
                "java_jackson" => " (DBOS Java's native serializer)",
                _ => "",
            };
            Err(Error::new(
                ErrorKind::Serialization,
                format!(
                    "{what} is stored with serialization `{other}`{writer}; this library reads only `{PORTABLE_JSON}`"
                ),
            ))
        }
    }
}

/// Decodes JSON text written with `serialization` into `T`.
///
/// # Errors
/// [`ErrorKind::Serialization`] for a foreign encoding or text that does not decode as `T`.
pub fn from_text<T: DeserializeOwned>(
    text: &str,
    serialization: Option<&str>,
    what: &str,
) -> Result<T> {
    check_serialization(serialization, what)?;
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!(
                "{what} does not decode as the expected type: {e} (stored text: {})",
                preview(text)
            ),
        )
        .with_source(e)
    })
}

/// Decodes a JSON tree into `T`.
///
/// # Errors
/// [`ErrorKind::Serialization`] when the value does not have `T`'s shape.
pub fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    let shown = preview(&value.to_string());
    serde_json::from_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!("{what} does not decode as the expected type: {e} (value: {shown})"),
        )
        .with_source(e)
    })
}

fn preview(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Workflow inputs in portable form: `{"positionalArgs":[...],"namedArgs":{...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortableInputs {
    /// Positional arguments, in order.
    #[serde(rename = "positionalArgs", default)]
    pub positional_args: Vec<Value>,
    /// Named arguments (written by other languages; this library writes none).
    #[serde(rename = "namedArgs", default)]
    pub named_args: serde_json::Map<String, Value>,
}

impl PortableInputs {
    /// Inputs with only positional arguments.
    pub fn positional(args: Vec<Value>) -> Self {
        PortableInputs {
            positional_args: args,
            named_args: Default::default(),
        }
    }

    /// Encodes the inputs as the text stored in `workflow_input.inputs`.
    ///
    /// # Errors
    /// Never in practice; JSON trees always encode.
    pub fn to_text(&self) -> Result<String> {
        to_text(self)
    }

    /// Decodes stored input text.
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`] for a foreign encoding or text of another shape.
    pub fn from_text(text: &str, serialization: Option<&str>) -> Result<Self> {
        from_text(text, serialization, "workflow input")
    }
}

/// An error in portable form: `{"name","message","code","data"}`.
///
/// This is how every DBOS SDK records a workflow's or step's error when it writes
/// `portable_json`, so an error recorded by Python or Go decodes into this type too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortableError {
    /// The error's type name (`"ValueError"`, `"ShopError"`, ...).
    pub name: String,
    /// The human-readable message.
    pub message: String,
    /// An optional code: a number, a string, or null.
    #[serde(default)]
    pub code: Option<Value>,
    /// Optional structured data; this library stores the serialized Rust error value here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl PortableError {
    /// Decodes a stored error column.
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`] for a foreign encoding or text of another shape.
    pub fn from_text(text: &str, serialization: Option<&str>) -> Result<Self> {
        from_text(text, serialization, "recorded error")
    }

    /// Encodes the error as stored text.
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_text(&self) -> Result<String> {
        to_text(self)
    }
}

impl std::fmt::Display for PortableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_round_trip_and_accept_other_writers() {
        let i = PortableInputs::positional(vec![json!(1), json!("two")]);
        let text = i.to_text().unwrap();
        assert_eq!(text, r#"{"positionalArgs":[1,"two"],"namedArgs":{}}"#);
        // The SQL function writes spaces and Python puts namedArgs first; both decode.
        let sql = r#"{"positionalArgs" : [7], "namedArgs" : {"label":"sql"}}"#;
        let d = PortableInputs::from_text(sql, Some("portable_json")).unwrap();
        assert_eq!(d.positional_args, vec![json!(7)]);
        assert_eq!(d.named_args["label"], json!("sql"));
        assert_eq!(
            PortableInputs::from_text("{}", None).unwrap(),
            PortableInputs::default()
        );
    }

    #[test]
    fn foreign_encodings_are_reported_not_misread() {
        let e = PortableInputs::from_text("gASVGwAAAA==", Some("py_pickle")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialization);
        assert!(e.to_string().contains("py_pickle"), "{e}");
        assert!(e.to_string().contains("PORTABLE"), "{e}");
    }

    #[test]
    fn portable_error_shapes() {
        let e = PortableError::from_text(
            r#"{"name":"RustPanic","message":"oops","code":"E42"}"#,
            Some("portable_json"),
        )
        .unwrap();
        assert_eq!(e.code, Some(json!("E42")));
        assert_eq!(e.data, None);
        let text = PortableError {
            name: "X".into(),
            message: "m".into(),
            code: None,
            data: None,
        }
        .to_text()
        .unwrap();
        assert_eq!(text, r#"{"name":"X","message":"m","code":null}"#);
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds (`2024-01-02T03:04:05.000Z`), the form
/// every DBOS SDK writes.
pub fn format_rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses an RFC 3339 UTC timestamp (`Z` or `+00:00`, optional fraction).
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    let total = days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + sec;
    let secs = u64::try_from(total).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

// Howard Hinnant's civil calendar algorithms (public domain).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_704_164_645_123);
        assert_eq!(format_rfc3339(t), "2024-01-02T03:04:05.123Z");
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.123Z"), Some(t));
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05+00:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_704_164_645))
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_rfc3339("not a time"), None);
    }
}
