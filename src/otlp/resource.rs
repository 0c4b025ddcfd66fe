//! The OpenTelemetry resource every signal carries: `OTEL_RESOURCE_ATTRIBUTES`,
//! then `telemetry.sdk.*`, then `service.name`, `service.version` and
//! `deployment.environment.name` from the configuration, a later key
//! replacing an earlier one (the precedence the OpenTelemetry SDK applies).
//! Spans, metrics and log records all take it from here.

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value},
    resource::v1::Resource,
};

use crate::Config;

/// The resource of `config`: its `OTEL_RESOURCE_ATTRIBUTES` (parsed with
/// the rest of the configuration, so a malformed value is an error at
/// build), then `telemetry.sdk.*`, then the configured service, version
/// and environment.
pub(crate) fn proto_resource(config: &Config) -> Resource {
    let mut attrs: Vec<(&str, &str)> = Vec::new();
    for (k, v) in &config.export.resource_attributes {
        put_attr(&mut attrs, k, v);
    }
    put_attr(&mut attrs, "telemetry.sdk.name", "glimpse_obs");
    put_attr(&mut attrs, "telemetry.sdk.language", "rust");
    put_attr(
        &mut attrs,
        "telemetry.sdk.version",
        env!("CARGO_PKG_VERSION"),
    );
    put_attr(&mut attrs, "service.name", &config.service);
    put_attr(&mut attrs, "service.version", &config.version);
    put_attr(
        &mut attrs,
        "deployment.environment.name",
        config.environment.as_str(),
    );
    Resource {
        attributes: attrs
            .into_iter()
            .map(|(k, v)| string_attribute(k, v))
            .collect(),
        ..Resource::default()
    }
}

/// Set `k` to `v`: a later key replaces an earlier one in its place.
fn put_attr<'a>(attrs: &mut Vec<(&'a str, &'a str)>, k: &'a str, v: &'a str) {
    if let Some(slot) = attrs.iter_mut().find(|(key, _)| *key == k) {
        slot.1 = v;
    } else {
        attrs.push((k, v));
    }
}

/// A string attribute.
pub(crate) fn string_attribute(key: &str, value: &str) -> ProtoKeyValue {
    ProtoKeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..ProtoKeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_names_the_service_its_version_and_environment() {
        let config = Config::default()
            .service("payment")
            .version("1.2.3")
            .environment(crate::Environment::Staging);
        let r = proto_resource(&config);
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        let s = |v: &str| Some(any_value::Value::StringValue(v.to_owned()));
        assert_eq!(get("service.name"), s("payment"));
        assert_eq!(get("service.version"), s("1.2.3"));
        assert_eq!(get("deployment.environment.name"), s("staging"));
        assert_eq!(get("telemetry.sdk.language"), s("rust"));
    }
}
