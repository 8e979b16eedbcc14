//! `ret_code` bit masks and codes (from linstor-common's `consts.json`).
//!
//! A `ret_code` is a signed 64-bit bit field: two type bits, operation and object bits, and a
//! 15-bit code. Classify by masking, never by HTTP status alone: "exists" arrives as HTTP 500.

use serde::{Deserialize, Serialize};

pub(crate) const MASK_ERROR: u64 = 0xC000_0000_0000_0000;
pub(crate) const MASK_WARN: u64 = 0x8000_0000_0000_0000;
pub(crate) const MASK_BITS_TYPE: u64 = 0xC000_0000_0000_0000;
pub(crate) const MASK_BITS_CODE: u64 = 0x7FFF;

#[cfg(test)]
pub(crate) const CREATED: u64 = 1;

pub(crate) const FAIL_NOT_FOUND_RSC_GRP: u64 = 317;
#[cfg(test)]
pub(crate) const FAIL_EXISTS_RSC_DFN: u64 = 501;
pub(crate) const FAIL_NOT_ENOUGH_NODES: u64 = 996;
pub(crate) const FAIL_UNKNOWN_ERROR: u64 = 998;
#[cfg(test)]
pub(crate) const WARN_NOT_FOUND: u64 = 3000;
/// JSON the server could not map (unknown field, wrong type): code bits are all ones but two.
pub(crate) const API_CALL_PARSE_ERROR: u64 = 0x0FFF_FFFF_FFFF_FFFD;

/// One entry of an `ApiCallRcList`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ApiCallRc {
    pub ret_code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_report_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub obj_refs: std::collections::BTreeMap<String, String>,
}

impl ApiCallRc {
    fn bits(&self) -> u64 {
        self.ret_code as u64
    }
    /// Error entries have both type bits set (a warning has only the upper one).
    pub fn is_error(&self) -> bool {
        self.bits() & MASK_ERROR == MASK_ERROR
    }
    pub fn is_warning(&self) -> bool {
        self.bits() & MASK_BITS_TYPE == MASK_WARN
    }
    /// The 15-bit code, without type, operation and object bits.
    pub fn code(&self) -> u64 {
        self.bits() & MASK_BITS_CODE
    }
    /// True for an error whose code is `code`.
    pub fn is_error_code(&self, code: u64) -> bool {
        self.is_error() && self.code() == code
    }
    /// True for a warning whose code is `code`.
    pub fn is_warning_code(&self, code: u64) -> bool {
        self.is_warning() && self.code() == code
    }
    pub fn is_parse_error(&self) -> bool {
        self.is_error() && self.bits() & !MASK_BITS_TYPE == API_CALL_PARSE_ERROR
    }
    /// Any `FAIL_EXISTS_*` (codes 500-528).
    pub fn is_exists(&self) -> bool {
        self.is_error() && (500..=528).contains(&self.code())
    }
    /// Any `FAIL_NOT_FOUND_*` (codes 300-318): a missing object, not a missing path.
    pub fn is_not_found(&self) -> bool {
        self.is_error() && (300..=318).contains(&self.code())
    }
}

/// Parses an error or result body: the server sends a list, though the spec documents an object.
pub(crate) fn parse_list(body: &[u8]) -> Option<Vec<ApiCallRc>> {
    if let Ok(list) = serde_json::from_slice::<Vec<ApiCallRc>>(body) {
        return Some(list);
    }
    serde_json::from_slice::<ApiCallRc>(body)
        .ok()
        .map(|one| vec![one])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(bits: u64) -> ApiCallRc {
        ApiCallRc {
            ret_code: bits as i64,
            message: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn classifies_by_mask() {
        // RD created: 0x1380001, the figure the real server sends.
        let created = rc(0x1380001);
        assert!(!created.is_error() && !created.is_warning());
        assert_eq!(created.code(), CREATED);
        let exists = rc(MASK_ERROR | 0x1000000 | 0x380000 | FAIL_EXISTS_RSC_DFN);
        assert!(exists.is_error() && exists.is_exists() && !exists.is_not_found());
        let warn_nf = rc(MASK_WARN | 0x3000000 | 0x380000 | WARN_NOT_FOUND);
        assert!(warn_nf.is_warning() && !warn_nf.is_error());
        assert!(warn_nf.is_warning_code(WARN_NOT_FOUND));
        let parse = rc(MASK_ERROR | API_CALL_PARSE_ERROR);
        assert!(parse.is_parse_error() && !parse.is_exists());
        // The signed form, as JSON carries it.
        let signed: ApiCallRc =
            serde_json::from_str(r#"{"ret_code": -4611686018406940171, "message": "exists"}"#)
                .unwrap();
        assert!(signed.is_error());
    }

    #[test]
    fn accepts_object_or_list() {
        assert_eq!(
            parse_list(br#"[{"ret_code": 1, "message": "a"}]"#)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_list(br#"{"ret_code": 1, "message": "a"}"#)
                .unwrap()
                .len(),
            1
        );
        assert!(parse_list(b"<html>").is_none());
    }
}
