//! LINSTOR ApiCallRc return-code constants (from linstor-common `consts.json`, as listed in
//! `docs/reference/linstor.md` §2 and the `linstor.sharedconsts` module of python-linstor).
//! Codes are i64 bitfields: type bits | op bits | object bits | code.

pub const MASK_ERROR: u64 = 0xC000_0000_0000_0000;
pub const MASK_WARN: u64 = 0x8000_0000_0000_0000;
pub const MASK_INFO: u64 = 0x4000_0000_0000_0000;
pub const MASK_BITS_CODE: u64 = 0x7FFF;

// Operation bits.
pub const MASK_CRT: u64 = 0x0100_0000;
pub const MASK_MOD: u64 = 0x0200_0000;
pub const MASK_DEL: u64 = 0x0300_0000;

// Object bits.
pub const MASK_VLM_GRP: u64 = 0x48_0000;
pub const MASK_RSC_GRP: u64 = 0x44_0000;
pub const MASK_NODE: u64 = 0x3C_0000;
pub const MASK_RSC_DFN: u64 = 0x38_0000;
pub const MASK_RSC: u64 = 0x34_0000;
pub const MASK_VLM_DFN: u64 = 0x30_0000;
pub const MASK_SNAPSHOT: u64 = 0x0C_0000;

// Success codes.
pub const CREATED: u64 = 1;
pub const DELETED: u64 = 2;
pub const MODIFIED: u64 = 3;

// Error codes (combine with MASK_ERROR).
pub const FAIL_INVLD_NODE_NAME: u64 = 200;
pub const FAIL_INVLD_RSC_NAME: u64 = 202;
pub const FAIL_INVLD_VLM_NR: u64 = 205;
pub const FAIL_INVLD_VLM_SIZE: u64 = 206;
pub const FAIL_INVLD_PROP: u64 = 213;
pub const FAIL_INVLD_SNAPSHOT_NAME: u64 = 218;
pub const FAIL_INVLD_PLACE_COUNT: u64 = 219;
pub const FAIL_INVLD_LAYER_STACK: u64 = 225;
pub const FAIL_INVLD_VLM_SIZES: u64 = 228;
pub const FAIL_INVLD_RSC_GRP_NAME: u64 = 237;

pub const FAIL_NOT_FOUND_NODE: u64 = 300;
pub const FAIL_NOT_FOUND_RSC_DFN: u64 = 301;
pub const FAIL_NOT_FOUND_RSC: u64 = 302;
pub const FAIL_NOT_FOUND_VLM_DFN: u64 = 303;
pub const FAIL_NOT_FOUND_STOR_POOL: u64 = 310;
pub const FAIL_NOT_FOUND_SNAPSHOT_DFN: u64 = 313;
pub const FAIL_NOT_FOUND_SNAPSHOT_VLM_DFN: u64 = 314;
pub const FAIL_NOT_FOUND_RSC_GRP: u64 = 317;
pub const FAIL_NOT_FOUND_VLM_GRP: u64 = 318;

pub const FAIL_EXISTS_RSC_DFN: u64 = 501;
pub const FAIL_EXISTS_RSC: u64 = 502;
pub const FAIL_EXISTS_VLM_DFN: u64 = 503;
pub const FAIL_EXISTS_NODE_CONN: u64 = 506;
pub const FAIL_EXISTS_SNAPSHOT_DFN: u64 = 514;
pub const FAIL_EXISTS_RSC_GRP: u64 = 522;
pub const FAIL_EXISTS_VLM_GRP: u64 = 523;

pub const FAIL_NOT_FOUND_DFLT_STOR_POOL: u64 = 311;
pub const FAIL_NOT_CONNECTED: u64 = 995;
pub const FAIL_EXISTS_EXT_NAME: u64 = 517;
pub const FAIL_SNAPSHOT_NOT_UPTODATE: u64 = 979;
pub const FAIL_NOT_ENOUGH_FREE_SPACE: u64 = 980;
pub const FAIL_NOT_ENOUGH_NODES: u64 = 996;
pub const FAIL_IN_USE: u64 = 997;
pub const FAIL_UNKNOWN_ERROR: u64 = 998;
pub const FAIL_IMPL_ERROR: u64 = 999;

// Warning codes (combine with MASK_WARN).
pub const WARN_NOT_CONNECTED: u64 = 1002;
pub const WARN_RSC_ALREADY_DEPLOYED: u64 = 1006;
pub const WARN_VLMDFN_RESIZE_SAME_SIZE: u64 = 1023;
pub const WARN_NOT_FOUND: u64 = 3000;

/// JSON body could not be mapped onto the request type (already includes MASK_ERROR).
pub const API_CALL_PARSE_ERROR: u64 = 0x0FFF_FFFF_FFFF_FFFD | MASK_ERROR;

/// An error entry: type, op and object bits ORed like the controller's ResponseConverter.
pub fn error(op: u64, obj: u64, code: u64) -> i64 {
    (MASK_ERROR | op | obj | code) as i64
}

pub fn warn(op: u64, obj: u64, code: u64) -> i64 {
    (MASK_WARN | op | obj | code) as i64
}

pub fn success(op: u64, obj: u64, code: u64) -> i64 {
    (op | obj | code) as i64
}

pub fn info(op: u64, obj: u64, code: u64) -> i64 {
    (MASK_INFO | op | obj | code) as i64
}

/// True when the entry has error bits (warnings share the top bit, so compare both).
pub fn is_error(ret_code: i64) -> bool {
    (ret_code as u64) & MASK_ERROR == MASK_ERROR
}

/// HTTP status for an error ret_code, as `ApiCallRcRestUtils.toResponse` maps it.
pub fn http_status(ret_code: i64) -> u16 {
    let code = (ret_code as u64) & MASK_BITS_CODE;
    if ret_code as u64 == API_CALL_PARSE_ERROR {
        400
    } else if (300..400).contains(&code) {
        404
    } else if (400..500).contains(&code) {
        403
    } else {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rd_created_matches_reference_number() {
        assert_eq!(success(MASK_CRT, MASK_RSC_DFN, CREATED), 20_447_233);
    }

    #[test]
    fn status_mapping() {
        assert_eq!(
            http_status(error(MASK_CRT, MASK_RSC_DFN, FAIL_EXISTS_RSC_DFN)),
            500
        );
        assert_eq!(
            http_status(error(0, MASK_RSC_DFN, FAIL_NOT_FOUND_RSC_DFN)),
            404
        );
        assert_eq!(http_status(API_CALL_PARSE_ERROR as i64), 400);
        assert!(is_error(API_CALL_PARSE_ERROR as i64));
        assert!(!is_error(warn(MASK_DEL, MASK_RSC_DFN, WARN_NOT_FOUND)));
    }
}
