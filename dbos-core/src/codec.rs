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
