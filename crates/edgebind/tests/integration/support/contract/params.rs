//! Turning path and query parameter strings into JSON values by their schema's type, so the
//! schema can check them. Arrays are repeated parameters (`?nodes=a&nodes=b`, OAS form/explode).

use serde_json::{Number, Value};

/// Coerce one string to the JSON type `ty` (`None`: leave it a string).
pub fn coerce_scalar(raw: &str, ty: Option<&str>) -> Result<Value, String> {
    match ty {
        Some("integer") => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<u64>().map(Value::from))
            .map_err(|_| format!("'{raw}' is not an integer")),
        Some("number") => raw
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("'{raw}' is not a number")),
        Some("boolean") => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("'{raw}' is not a boolean (true or false)")),
        },
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// Decode one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn form_decode(s: &str) -> Option<String> {
    super::routes::percent_decode(&s.replace('+', " "))
}

/// Split a raw query string into decoded pairs.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (form_decode(k), form_decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!(
                    "query component '{pair}' is not valid percent-encoding"
                )),
            }
        })
        .collect()
}
