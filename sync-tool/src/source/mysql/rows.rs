//! The row images of a ROWS event, read with what the TABLE_MAP says about each column,
//! worked out once per TABLE_MAP. mysql_common's `RowsEvent::rows` re-reads the map's optional
//! metadata and builds a named `Column` per column for every row it returns, which cost the
//! stream as much CPU as everything else it does per row; the values themselves are still
//! decoded by mysql_common (`BinlogValue`), so the type handling stays the crate's.

use anyhow::{anyhow, bail, Result};
use mysql_async::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_common::io::ParseBuf;

/// How one column's values are encoded in a row image.
pub struct Codec {
    ty: ColumnType,
    meta: Vec<u8>,
    unsigned: bool,
}

/// One codec per column of the table, from its TABLE_MAP.
pub fn codecs(tme: &TableMapEvent<'_>) -> Result<Vec<Codec>> {
    let ex = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
    let mut signedness = ex.iter_signedness();
    (0..tme.columns_count() as usize)
        .map(|i| {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| anyhow!("column {i}: {e:?}"))?
                .ok_or_else(|| anyhow!("column {i}: no type"))?;
            // one signedness bit per numeric column, in column order
            let unsigned = ty.is_numeric_type() && signedness.next().unwrap_or(false);
            Ok(Codec {
                ty,
                meta: tme.get_column_metadata(i).unwrap_or(&[]).to_vec(),
                unsigned,
            })
        })
        .collect()
}

/// Row images: (before, after) per row; WRITE has only after, DELETE only before.
pub type Image<'a> = Vec<BinlogValue<'a>>;

/// Reads every row of `re`.
pub fn rows<'a>(
    re: &'a RowsEventData<'a>,
    codecs: &'a [Codec],
) -> Result<Vec<(Option<Image<'a>>, Option<Image<'a>>)>> {
    if matches!(re, RowsEventData::PartialUpdateRowsEvent(_)) {
        bail!("partial JSON update in the binlog (set binlog_row_value_options='' on the server)");
    }
    let n = re.num_columns() as usize;
    if n != codecs.len() {
        bail!("rows event has {n} columns, its TABLE_MAP {}", codecs.len());
    }
    let mut buf = ParseBuf(re.rows_data());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let before = match re.columns_before_image() {
            Some(present) => Some(image(&mut buf, codecs, |i| {
                present.get(i).is_some_and(|b| *b)
            })?),
            None => None,
        };
        let after = match re.columns_after_image() {
            Some(present) => Some(image(&mut buf, codecs, |i| {
                present.get(i).is_some_and(|b| *b)
            })?),
            None => None,
        };
        out.push((before, after));
    }
    Ok(out)
}

/// One row image: a null bitmap over the columns present, then their non-null values.
fn image<'a>(
    buf: &mut ParseBuf<'a>,
    codecs: &'a [Codec],
    present: impl Fn(usize) -> bool,
) -> Result<Image<'a>> {
    let count = (0..codecs.len()).filter(|&i| present(i)).count();
    let nulls: &[u8] = buf.parse(count.div_ceil(8))?;
    let mut values = Vec::with_capacity(count);
    let mut k = 0;
    for (i, c) in codecs.iter().enumerate() {
        if !present(i) {
            continue;
        }
        if nulls[k / 8] & (1 << (k % 8)) != 0 {
            values.push(BinlogValue::Value(mysql_async::Value::NULL));
        } else {
            values.push(buf.parse::<BinlogValue<'a>>((
                c.ty,
                c.meta.as_slice(),
                c.unsigned,
                false,
            ))?);
        }
        k += 1;
    }
    Ok(values)
}
