# Every rule of decision.rego, with the shipped data and with data overridden
# to show operators' common edits (grants, caps, type lists) need no Rego.
package dmr.authz_test

import data.dmr.authz

principal(id, org) := {"id": id, "organisation": org, "roles": ["bot"], "labels": {}}

msg(from_org, to_org, type, size) := {
	"sender": principal("a-bot", from_org),
	"recipient": principal("b-bot", to_org),
	"message": {"id": "7b0e6a8c-9f1e-4a8a-b0a6-0d1c4f3e2a10", "type": type, "size": size},
	"hop": {"origin": "node-a", "count": 0},
	"node": {"id": "node-a"},
}

test_same_organisation_allowed if {
	authz.decision == {"allow": true, "reasons": ["SAME_ORGANISATION"]} with input as msg("ria", "ria", "ChatMessage", 10)
}

test_grant_without_types_allows_every_allowed_type if {
	authz.decision == {"allow": true, "reasons": ["GRANT"]} with input as msg("ria", "rik", "FileTransfer", 10)
}

test_grant_with_types_allows_listed_type if {
	authz.decision == {"allow": true, "reasons": ["GRANT"]} with input as msg("rik", "ria", "ChatMessage", 10)
}

test_grant_with_types_refuses_other_type if {
	authz.decision == {"allow": false, "reasons": ["TYPE_NOT_GRANTED"]} with input as msg("rik", "ria", "Ping", 10)
}

test_no_grant_denied if {
	authz.decision == {"allow": false, "reasons": ["NO_GRANT"]} with input as msg("ria", "ppa", "ChatMessage", 10)
}

test_grants_are_directional if {
	authz.decision.allow with input as msg("ppa", "ria", "ChatMessage", 10)
	not authz.decision.allow with input as msg("ria", "ppa", "ChatMessage", 10)
}

test_no_grants_in_data_denies_across_organisations if {
	authz.decision == {"allow": false, "reasons": ["NO_GRANT"]} with input as msg("ria", "rik", "ChatMessage", 10)
		with data.dmr.grants as []
}

test_grant_with_empty_types_grants_nothing if {
	authz.decision == {"allow": false, "reasons": ["TYPE_NOT_GRANTED"]} with input as msg("ria", "rik", "ChatMessage", 10)
		with data.dmr.grants as [{"from": "ria", "to": "rik", "types": []}]
}

test_type_not_allowed_network_wide if {
	authz.decision == {"allow": false, "reasons": ["TYPE_NOT_ALLOWED"]} with input as msg("ria", "ria", "Unknown", 10)
}

test_no_type_list_allows_every_type if {
	authz.decision.allow with input as msg("ria", "ria", "Unknown", 10)
		with data.dmr.limits as {"maxSize": 100}
}

test_size_at_default_cap_allowed if {
	authz.decision.allow with input as msg("ria", "ria", "ChatMessage", 1048576)
}

test_size_over_default_cap_denied if {
	authz.decision == {"allow": false, "reasons": ["SIZE_LIMIT"]} with input as msg("ria", "ria", "ChatMessage", 1048577)
}

test_per_type_cap_overrides_default if {
	authz.decision.allow with input as msg("ria", "ria", "FileTransfer", 2000000)
	authz.decision.reasons == ["SIZE_LIMIT"] with input as msg("ria", "ria", "FileTransfer", 10485761)
}

test_no_cap_means_no_size_limit if {
	authz.decision.allow with input as msg("ria", "ria", "ChatMessage", 99999999999)
		with data.dmr.limits as {}
}

test_hop_limit if {
	authz.decision.allow with input as object.union(msg("ria", "ria", "ChatMessage", 1), {"hop": {"origin": "node-a", "previous": "node-b", "count": 8}})
	authz.decision.reasons == ["HOP_LIMIT"] with input as object.union(msg("ria", "ria", "ChatMessage", 1), {"hop": {"origin": "node-a", "previous": "node-b", "count": 9}})
}

test_several_denies_all_reported_sorted if {
	authz.decision == {"allow": false, "reasons": ["NO_GRANT", "SIZE_LIMIT", "TYPE_NOT_ALLOWED"]} with input as msg("ria", "ppa", "Unknown", 99999999)
}

test_invalid_input_denied if {
	authz.decision == {"allow": false, "reasons": ["INPUT_INVALID"]} with input as {}
}

test_missing_input_denied if {
	authz.decision == {"allow": false, "reasons": ["INPUT_INVALID"]}
}

test_invalid_input_wins_over_same_organisation if {
	authz.decision.reasons == ["INPUT_INVALID"] with input as object.union(msg("ria", "ria", "ChatMessage", 1), {"extra": true})
}
