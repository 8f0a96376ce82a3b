//! The integration tests: one module per promise signbus makes, named after it, and the shared fixtures in
//! `support`. One binary; nextest runs each test in a process of its own.

mod support;

mod authorization_grants_keys_per_requester;
mod bad_requests_get_error_replies;
mod broker_restart_loses_nothing;
mod cli_is_a_pubtools_sign_drop_in;
mod cluster_failover_loses_nothing;
mod container_signing_end_to_end;
mod cosign_attach_keeps_every_layer;
mod cosign_keys_interoperate;
mod cross_type_signatures_are_refused;
mod docs_match_the_code;
mod every_request_type_signs_and_verifies;
mod in_process_signatures_pass_gpg_and_skopeo;
mod logs_and_replies_carry_the_trace;
mod metrics_count_what_was_served;
mod partitioned_server_is_noticed_and_bypassed;
mod passphrase_keys_sign_and_stay_secret;
mod pubtools_sign_client_is_served;
mod replay_prints_schema_valid_replies;
mod sigkill_redelivers_unacked_requests;
mod signed_images_pass_signbus_verify;
mod signer_outage_is_survived;
mod sigterm_drains_and_loses_nothing;
mod tls_external_identity_from_certificate;
mod tls_refuses_wrong_ca_expired_and_missing_certs;
mod tls_signs_end_to_end_over_both_protocols;
mod topology_is_declared_at_start;
mod verify_agrees_with_skopeo_copy;
mod verify_cli_exit_codes_and_json;
mod verify_file_lookaside_skips_bad_signatures;
mod verify_http_lookaside_statuses;
mod verify_publish_store;
mod verify_refuses_bad_signatures;
mod verify_scope_precedence;
mod verify_signed_identity_rules;
mod wire_types_and_schemas_agree;
