//! `conformance-fixture` binary: mcp-server's application (same flags, same OAuth bridge)
//! serving the conformance fixture pack instead of the product's tools. Test support for
//! `e2e/conformance`; never shipped.
use clap::CommandFactory;
use conformance_fixture::{ConformanceServer, TOOL_NAMES};
use mcp_server::{cli, Application};

fn main() -> std::process::ExitCode {
    let command = cli::Cli::command()
        .name("conformance-fixture")
        .bin_name("conformance-fixture")
        .about("mcp-server serving the MCP conformance suite's fixture tools, resources and prompts (tests only)");
    cli::run(command, |settings| {
        let tool_names = TOOL_NAMES.iter().map(|name| name.to_string()).collect();
        Application::build_with_service(settings, tool_names, ConformanceServer::new)
    })
}
