use clap::Parser as _;

#[tokio::main]
async fn main() {
    shared::telemetry::init_logging("info,sqlx=warn");
    let cli = auth_server::cli::Cli::parse();
    if let Err(e) = auth_server::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
