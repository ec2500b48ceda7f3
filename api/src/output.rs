//! Query results as tables, CSV, JSON, Parquet and Arrow IPC.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::ArrayWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use parquet::arrow::ArrowWriter;

use crate::Format;

/// Write `batches` for the `sql` subcommand.
pub fn write_cli(batches: &[RecordBatch], format: Format, output: Option<&Path>) -> Result<()> {
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("could not create {}", p.display()))?,
        )),
        None => {
            if format == Format::Parquet && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("Parquet is binary: add --output FILE.parquet, or redirect standard output");
            }
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        }
    };
    match format {
        Format::Table => {
            writeln!(out, "{}", pretty_format_batches(batches)?)?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        Format::Csv => out.write_all(&csv(batches)?)?,
        Format::Json => {
            out.write_all(&json(batches)?)?;
            writeln!(out)?;
        }
        Format::Parquet => out.write_all(&parquet(batches)?)?,
    }
    out.flush()?;
    Ok(())
}

/// CSV with a header row.
pub fn csv(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = CsvWriterBuilder::new().with_header(true).build(&mut buf);
        for b in batches {
            w.write(b)?;
        }
    }
    Ok(buf)
}

/// A JSON array with one object per row.
pub fn json(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = ArrayWriter::new(&mut buf);
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if buf.is_empty() {
        buf.extend_from_slice(b"[]");
    }
    Ok(buf)
}

/// An Arrow IPC stream.
pub fn arrow_stream(
    schema: &datafusion::arrow::datatypes::Schema,
    batches: &[RecordBatch],
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, schema)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(buf)
}

/// A Parquet file.
pub fn parquet(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let Some(first) = batches.first() else {
        bail!("the query returned no batches; nothing to write as Parquet");
    };
    let mut buf = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut buf, first.schema(), None)?;
        for b in batches {
            w.write(b)?;
        }
        w.close()?;
    }
    Ok(buf)
}
