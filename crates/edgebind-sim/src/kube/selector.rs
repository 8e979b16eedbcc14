//! Label and field selectors, parsed from query strings as the real server accepts them.

use serde_json::Value;

use super::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector {
    reqs: Vec<LabelReq>,
}

/// Splits on commas that are not inside `( ... )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(key: &str, rest: &str, original: &str) -> ApiResult<(String, Vec<String>)> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad_selector(original))?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() || !valid_label_part(key) {
        return Err(bad_selector(original));
    }
    Ok((key.to_string(), values))
}

fn bad_selector(s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: invalid label selector: \"{s}\""
    ))
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { reqs });
        }
        for term in split_top_level(s) {
            let t = term.trim();
            if t.is_empty() {
                return Err(bad_selector(s));
            }
            let req = if let Some(key) = t.strip_prefix('!') {
                let key = key.trim();
                if !valid_label_part(key) {
                    return Err(bad_selector(s));
                }
                LabelReq::NotExists(key.to_string())
            } else if let Some((k, v)) = t.split_once("!=") {
                LabelReq::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = t.split_once("==") {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = t.split_once('=') {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some(idx) = t.find(" notin ") {
                let (k, vals) = parse_set(t[..idx].trim(), &t[idx + 7..], s)?;
                LabelReq::NotIn(k, vals)
            } else if let Some(idx) = t.find(" in ") {
                let (k, vals) = parse_set(t[..idx].trim(), &t[idx + 4..], s)?;
                LabelReq::In(k, vals)
            } else {
                if !valid_label_part(t) {
                    return Err(bad_selector(s));
                }
                LabelReq::Exists(t.to_string())
            };
            if let LabelReq::Eq(k, _) | LabelReq::NotEq(k, _) = &req
                && !valid_label_part(k)
            {
                return Err(bad_selector(s));
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    negate: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector {
    reqs: Vec<FieldReq>,
}

impl FieldSelector {
    /// `allowed` lists the dotted field paths the resource supports besides the metadata ones;
    /// others are refused with 400 as the real server does.
    pub fn parse(s: &str, allowed: &[String]) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for term in s.split(',') {
            let t = term.trim();
            let (field, value, negate) = if let Some((f, v)) = t.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = t.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = t.split_once('=') {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{t}'"
                )));
            };
            let field = field.trim();
            let known = matches!(field, "metadata.name" | "metadata.namespace")
                || allowed.iter().any(|a| a == field);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldReq {
                path: field.split('.').map(str::to_string).collect(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let mut cur = Some(obj);
            for p in &r.path {
                cur = cur.and_then(|c| c.get(p));
            }
            let actual = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) != r.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({ "metadata": { "name": "a", "namespace": "ns", "labels": labels } })
    }

    #[test]
    fn label_selector_forms() {
        let o = obj(json!({ "app": "web", "tier": "front" }));
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (back)", false),
            ("missing notin (x)", true),
        ];
        for (sel, want) in cases {
            let parsed = LabelSelector::parse(sel).expect(sel);
            assert_eq!(parsed.matches(&o), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selector_metadata_and_refusal() {
        let o = obj(json!({}));
        let allowed = vec![];
        assert!(
            FieldSelector::parse("metadata.name=a", &allowed)
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns", &allowed)
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("spec.x=1", &allowed).is_err());
    }
}
