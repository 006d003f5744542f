//! Prints the folder of a test fixture made whole, for scripts:
//! `hearth-test-fixture cross-encoder bert` writes the small random cross-encoder's weights
//! from its recipe (see `hearth_testdata::cross_encoder_dir`) and prints where it is.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["cross-encoder", name @ ("bert" | "xlm-roberta")] => {
            println!("{}", hearth_testdata::cross_encoder_dir(name).display());
        }
        _ => {
            eprintln!("usage: hearth-test-fixture cross-encoder bert|xlm-roberta");
            std::process::exit(2);
        }
    }
}
