//! A PostgreSQL transaction as the journal's [`Tx`]: the shared SQL's values and rows.

use std::cell::RefCell;
use std::error::Error as StdError;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::journal::sql::{Row, Tx, Val};
use crate::journal::JournalError;

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Val::Text(t) => match *ty {
                Type::INT8 => t.parse::<i64>()?.to_sql(ty, out),
                _ => t.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_row(r: &postgres::Row) -> Result<Row, postgres::Error> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Val::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Val::Int(i64::from(v))),
            _ => r.try_get::<_, Option<String>>(i)?.map(Val::Text),
        };
        vals.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(vals))
}

fn refs(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A PostgreSQL transaction as the journal's [`Tx`].
pub struct PgTx<'a, 'b>(pub RefCell<&'a mut postgres::Transaction<'b>>);

impl Tx for PgTx<'_, '_> {
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, JournalError> {
        Ok(self
            .0
            .borrow_mut()
            .execute(crate::journal::sql::to_pg(sql).as_str(), &refs(params))?)
    }

    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, JournalError> {
        let rows = self
            .0
            .borrow_mut()
            .query(crate::journal::sql::to_pg(sql).as_str(), &refs(params))?;
        Ok(rows.iter().map(pg_row).collect::<Result<_, _>>()?)
    }
}
