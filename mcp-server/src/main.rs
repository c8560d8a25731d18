//! `mcp-server` binary: see [`mcp_server::cli`].
fn main() -> std::process::ExitCode {
    mcp_server::cli::main()
}
