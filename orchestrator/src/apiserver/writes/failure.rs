//! How a refused write is answered: the API server's `Status` failures (422 `Invalid` with
//! field causes, 404, 409), named after the object.

use super::*;

/// A write refused, as the `Status` it is answered with.
#[derive(Debug)]
pub(super) struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
    /// A refusal by the admission, named after the object once known.
    refused: Option<Vec<Problem>>,
}

impl Failure {
    pub(super) fn new(
        code: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
            refused: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(super) fn details(mut self, details: Value) -> Failure {
        self.details = Some(details);
        self
    }

    pub(super) fn respond(self) -> Response<ApiBody> {
        status(self.code, self.reason, &self.message, self.details)
    }

    /// A refusal named after its object, as the API server's `422 Invalid`.
    pub(super) fn for_object(self, resource: &Resource, name: &str) -> Failure {
        match self.refused {
            Some(problems) => invalid(resource, name, &problems),
            None => self,
        }
    }
}

impl From<Refused> for Failure {
    fn from(r: Refused) -> Failure {
        let mut f = Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "");
        f.refused = Some(r.0);
        f
    }
}

/// `Kind.group`, as the API server names a kind in `Invalid` messages.
pub(super) fn qualified_kind(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.kind.to_owned()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    }
}

/// The API server's reason for a field error, from the message's opening words.
pub(super) fn cause_reason(message: &str) -> &'static str {
    [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Forbidden", "FieldValueForbidden"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Not found", "FieldValueNotFound"),
    ]
    .iter()
    .find(|(start, _)| message.starts_with(start))
    .map_or("FieldValueInvalid", |(_, reason)| reason)
}

/// `422 Invalid` for these problems of one object, each a cause with its field.
pub(super) fn invalid(resource: &Resource, name: &str, problems: &[Problem]) -> Failure {
    let one = |p: &Problem| {
        if p.field.is_empty() {
            p.message.clone()
        } else {
            format!("{}: {}", p.field, p.message)
        }
    };
    let errors: Vec<String> = problems.iter().map(one).collect();
    let listed = match errors.as_slice() {
        [] => "refused by the control plane's admission".to_owned(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let causes: Vec<Value> = problems
        .iter()
        .map(
            |p| json!({"reason": cause_reason(&p.message), "message": p.message, "field": p.field}),
        )
        .collect();
    Failure::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!(
            "{} \"{name}\" is invalid: {listed}",
            qualified_kind(resource)
        ),
    )
    .details(
        json!({"name": name, "group": resource.group, "kind": resource.kind, "causes": causes}),
    )
}

pub(super) fn not_found(resource: &Resource, name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
    )
    .details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
}

pub(super) fn conflict(resource: &Resource, name: &str) -> Failure {
    Failure::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            resource.qualified()
        ),
    )
    .details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
}
