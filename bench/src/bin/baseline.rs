//! `baseline`: the ceiling server of the benchmarks (see `bench/src/baseline.rs`).

use bench::baseline::{Baseline, Es256Verifier};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "Bare actix-web JSON-RPC handler: the no-auth / ES256 ceiling for the benchmarks"
)]
struct Args {
    /// Address to bind (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3900")]
    listen: String,
    /// actix worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Verify one ES256 bearer token per request, with keys from this JWKS URL or PEM file.
    #[arg(long, value_name = "JWKS_URL_OR_PEM")]
    verify_es256: Option<String>,
    /// Required `iss` (with --verify-es256).
    #[arg(long)]
    issuer: Option<String>,
    /// Required `aud` (with --verify-es256).
    #[arg(long)]
    audience: Option<String>,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let verifier = match &args.verify_es256 {
        Some(source) => Some(
            Es256Verifier::load(source, args.issuer.as_deref(), args.audience.as_deref()).await?,
        ),
        None => None,
    };
    let mode = if verifier.is_some() {
        "es256"
    } else {
        "no-auth"
    };
    let app = Baseline::build(&args.listen, args.workers, verifier)?;
    let host = args
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("127.0.0.1");
    println!(
        "listening on http://{host}:{} (baseline, {mode}, {} worker(s))",
        app.port(),
        args.workers.max(1)
    );
    app.server().await?;
    Ok(())
}
