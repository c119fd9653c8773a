//! `schema/schema.graphql` is the contract: it must be what the code serves.

#[test]
fn the_committed_sdl_matches_the_code() {
    let committed = include_str!("../../schema/schema.graphql");
    let generated = shl_gateway::graphql::sdl();
    assert!(
        committed == generated,
        "schema/schema.graphql is out of date: run `cargo run -- schema > schema/schema.graphql`"
    );
}

#[test]
fn the_schema_command_prints_the_sdl() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .arg("schema")
        .output()
        .expect("binary runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).expect("utf-8"),
        shl_gateway::graphql::sdl()
    );
}

#[test]
fn the_sdl_has_the_contract_types() {
    let sdl = shl_gateway::graphql::sdl();
    for expected in [
        "createHealthLink(input: CreateHealthLinkInput!): DocumentReference!",
        "shareableResourceTypes: [String!]!",
        "enum HealthLinkMode",
        "qrCodeSvg(",
        "passcode: String",
        "mode: HealthLinkMode = PASSCODE",
    ] {
        assert!(sdl.contains(expected), "missing {expected:?} in\n{sdl}");
    }
}
