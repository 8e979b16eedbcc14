//! The one list of known, documented differences between the official OpenAPI documents and
//! the real servers. Everything not listed here is a contract violation. Each entry cites the
//! reference sheet (`docs/reference/*.md`) that records the real behaviour.

/// What a deviation changes in the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// Remove `keyword` from the schema object at `pointer` (a JSON pointer into the document)
    /// before translating it. Loading fails if the pointer or keyword is gone, so a spec update
    /// that fixes the document makes the entry visibly stale.
    DropKeyword {
        pointer: &'static str,
        keyword: &'static str,
    },
    /// The `oneOf` at `pointer` is read as `anyOf`.
    OneOfAsAnyOf { pointer: &'static str },
    /// The schema at `pointer` also accepts JSON `null`.
    AcceptNull { pointer: &'static str },
    /// Responses whose schema is exactly a `$ref` to `object_schema` also accept `list_schema`.
    ErrorBodyAsList {
        object_schema: &'static str,
        list_schema: &'static str,
    },
    /// Any operation may answer 401, 403, 404 or 500 even where the spec does not declare it,
    /// provided the body is an `ApiCallRcList` whose first error entry maps to exactly that status
    /// (LINSTOR's `ApiCallRcRestUtils.toResponse`).
    LinstorErrorStatusFromRetCode { list_schema: &'static str },
    /// Response bodies under `status_key` are checked against the failure envelope alone: the
    /// component ending in `failure_suffix` that the declared schema names (directly or as an
    /// `allOf` member), else `default_failure`.
    FailureEnvelopeForErrors {
        status_key: &'static str,
        failure_suffix: &'static str,
        default_failure: &'static str,
    },
    /// A GET of one object by name, one segment below a list GET whose description contains
    /// `description_marker`, is that list's operation answering one array item.
    LinstorSingleGet { description_marker: &'static str },
    /// A DELETE whose request body is `required` but has no schema may be sent without a body.
    SchemalessDeleteBodyOptional,
    /// The media type key `undefined` (an artefact of the schema generator on raw-content
    /// downloads) matches any response content type, unchecked.
    UndefinedMediaTypeMatchesAny,
}

/// One documented deviation, bound to the document it applies to by `info.title` prefix.
#[derive(Debug, Clone, Copy)]
pub struct Deviation {
    pub spec_title_prefix: &'static str,
    pub fix: Fix,
    /// Why, with the reference that records the real behaviour.
    pub why: &'static str,
}

const LINSTOR: &str = "Linstor REST API";
const CLOUDFLARE: &str = "Cloudflare API v4";

pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        spec_title_prefix: LINSTOR,
        fix: Fix::ErrorBodyAsList {
            object_schema: "ApiCallRc",
            list_schema: "ApiCallRcList",
        },
        why: "OperationFailed says one ApiCallRc, but the server serializes every error body as a \
              list (linstor.md §2, ApiCallRcRestUtils.toJSON)",
    },
    Deviation {
        spec_title_prefix: LINSTOR,
        fix: Fix::LinstorErrorStatusFromRetCode {
            list_schema: "ApiCallRcList",
        },
        why: "the status comes from the first error ret_code on every endpoint: 300-399 -> 404, \
              400-499/FAIL_SIGN_IN -> 403, FAIL_SIGN_IN_MISSING_CREDENTIALS -> 401, all else \
              (FAIL_EXISTS_*, FAIL_IN_USE, FAIL_INVLD_*) -> 500, even where the spec lists only \
              200 (linstor.md §2 'HTTP status mapping', §3)",
    },
    Deviation {
        spec_title_prefix: LINSTOR,
        fix: Fix::LinstorSingleGet {
            description_marker: "can be queried by adding its",
        },
        why: "the document has no GET on /v1/resource-definitions/{resource} and its siblings, \
              only the list GET's note that a single object 'can be queried by adding its name'; \
              the server answers the object itself, not a list (linstor.md §2, §3 linstor-csi \
              'GET the object')",
    },
    Deviation {
        spec_title_prefix: LINSTOR,
        fix: Fix::OneOfAsAnyOf {
            pointer: "/components/schemas/VolumeLayer/properties/data",
        },
        why: "VolumeLayer.data is oneOf seven layer volumes whose properties are all optional \
              and shared (device_path, allocated_size_kib, ...), so any real layer volume \
              matches several and strict oneOf rejects every resource view that carries layer \
              data; the sibling `type` names the layer (a flaw of the document itself, not in \
              the reference sheets)",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::OneOfAsAnyOf {
            pointer: "/components/schemas/infra_ServiceConfig",
        },
        why: "a Workers VPC service is oneOf HttpServiceConfig and TcpServiceConfig, both allOf \
              ServiceCommon plus optional ports with no `type` constraint of their own, so every \
              service matches both; the document's `discriminator` on `type` is what decides \
              (a flaw of the document itself; cloudflare.md §11)",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::OneOfAsAnyOf {
            pointer: "/components/schemas/infra_ServiceHost",
        },
        why: "the host is oneOf IPv4Host, IPv6Host, DualStackHost and HostnameHost without \
              additionalProperties: false, so a dual-stack host also matches IPv4Host and \
              IPv6Host; the keys present decide (the union is reconstructed from the API \
              reference, cloudflare.md §11)",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::DropKeyword {
            pointer: "/components/schemas/workers_messages/items/properties/code",
            keyword: "minimum",
        },
        why: "workers_messages code has minimum 1000 but real codes such as 971 exist \
              (cloudflare.md §0 'Quirks')",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::AcceptNull {
            pointer: "/components/schemas/workers_secret-patch-request/properties/secrets/additionalProperties",
        },
        why: "secrets-bulk puts nullable next to allOf, which admits no null under OAS 3.0.3, \
              yet the real API takes null to delete a secret (cloudflare.md §0 'Quirks', §2)",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::FailureEnvelopeForErrors {
            status_key: "4XX",
            failure_suffix: "api-response-common-failure",
            default_failure: "workers_api-response-common-failure",
        },
        why: "most 4XX schemas are allOf [success envelope, failure envelope], unsatisfiable \
              (success enum [true] and enum [false]); settings' 4XX give the success envelope \
              alone. The real API answers every non-2xx with success:false and errors \
              (cloudflare.md §1 'Envelope')",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::SchemalessDeleteBodyOptional,
        why: "DELETE operations declare a required `application/json: {}` body; the real calls \
              take none (cloudflare.md §2 table: DELETE script/route/domain, request '–')",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::UndefinedMediaTypeMatchesAny,
        why: "GET script returns raw script content, not JSON; the document keys that response \
              `undefined` (cloudflare.md §2 'GET …/scripts/{name}: Raw script content')",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::DropKeyword {
            pointer: "/components/schemas/tunnel_ingressRule",
            keyword: "required",
        },
        why: "an ingress rule requires hostname, yet the last rule must be a catch-all without \
              one, as Cloudflare's own remote-management example sends it (cloudflare.md §11)",
    },
    Deviation {
        spec_title_prefix: CLOUDFLARE,
        fix: Fix::DropKeyword {
            pointer: "/components/schemas/dns-records_dns-record",
            keyword: "required",
        },
        why: "the one record schema serves the create request and the answers, and requires the \
              server-made id, proxiable, created_on and modified_on in both (no properties at \
              that level carry readOnly); each record type still requires type, name, content",
    },
];

/// The deviations that apply to a document with this `info.title`.
pub fn for_title(title: &str) -> Vec<Fix> {
    DEVIATIONS
        .iter()
        .filter(|d| title.starts_with(d.spec_title_prefix))
        .map(|d| d.fix)
        .collect()
}
