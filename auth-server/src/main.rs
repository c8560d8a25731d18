use clap::Parser as _;

#[tokio::main]
async fn main() {
    // No access-log line per request at info by default (rendering and
    // writing it costs several % of a token exchange); `RUST_LOG=info` brings it
    // back. The audit trail of security events is in the database either way.
    shared::telemetry::init_logging("info,sqlx=warn,actix_web::middleware::logger=warn");
    let cli = auth_server::cli::Cli::parse();
    if let Err(e) = auth_server::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
