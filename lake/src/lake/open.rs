//! Opening a lake: loading its tables and indexes, and recovery from the WAL.

use super::*;

fn wal_dir(options: &LakeOptions, workspace_url: &Url) -> PathBuf {
    if let Some(d) = &options.wal_dir {
        return d.clone();
    }
    if is_local(workspace_url) {
        if let Ok(p) = workspace_url.to_file_path() {
            return p.join("_wal");
        }
    }
    Path::new("medlake-wal").join(&options.workspace)
}

/// The resource types with a table folder under `<workspace>/fhir/`.
pub(super) async fn list_resource_tables(workspace_url: &Url) -> Result<Vec<String>> {
    let fhir = workspace_url
        .join("fhir/")
        .map_err(|e| LakeError::BadDataUrl {
            url: workspace_url.to_string(),
            reason: e.to_string(),
        })?;
    if is_local(&fhir) && fhir.to_file_path().map(|p| !p.exists()).unwrap_or(true) {
        return Ok(Vec::new());
    }
    let store = deltalake::logstore::store_for(&fhir, std::iter::empty::<(String, String)>())
        .map_err(|e| LakeError::delta(fhir.as_str(), e))?;
    let listing = store
        .list_with_delimiter(None)
        .await
        .map_err(|e| LakeError::delta(fhir.as_str(), e.into()))?;
    let by_lower: HashMap<String, &str> = medlake_ingest::validate::Validator::r4()
        .stored_types()
        .into_iter()
        .map(|t| (t.to_ascii_lowercase(), t))
        .collect();
    let mut out = Vec::new();
    for p in listing.common_prefixes {
        if let Some(name) = p.filename() {
            if let Some(t) = by_lower.get(name) {
                out.push(t.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Bring a table written by an earlier medlake up to [`resource_schema`] by adding the
/// columns it lacks (nullable, so existing files need no rewrite): `search` came later.
/// Its old rows have no search values; the index extracts them from `resource`.
async fn add_missing_columns(table: DeltaTable, resource_type: &str) -> Result<DeltaTable> {
    use deltalake::kernel::{DataType, PrimitiveType, StructField};
    let provider = table.table_provider().await?;
    let have = provider.schema();
    let missing: Vec<StructField> = crate::schema::resource_schema()
        .fields()
        .iter()
        .filter(|f| have.column_with_name(f.name()).is_none())
        .filter(|f| *f.data_type() == arrow::datatypes::DataType::Utf8 && f.is_nullable())
        .map(|f| StructField::new(f.name(), DataType::Primitive(PrimitiveType::String), true))
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    tracing::info!(
        "adding {} column(s) to the {resource_type} table written by an earlier medlake",
        missing.len()
    );
    table
        .add_columns()
        .with_fields(missing)
        .await
        .map_err(|e| LakeError::delta(resource_type, e))
}

/// Feed the id index, with each version's place, and the search index if there is one,
/// from one scan of a table: the `search` column, or, for rows written before there was
/// one, values extracted from `resource` again.
async fn load_indexes(
    points: &Arc<PointReader>,
    table: &DeltaTable,
    resource_type: &str,
    mut search: Option<&mut SearchIndex>,
    ids: &mut IdIndex,
) -> Result<()> {
    let started = std::time::Instant::now();
    let values = if search.is_some() {
        Values::Search
    } else {
        Values::None
    };
    let mut rx = file_scan::scan(points.clone(), table, resource_type, values, |_| true)?;
    let mut rows = 0usize;
    while let Some(item) = rx.recv().await {
        let item = item?;
        let row_group =
            ids.locate_file(resource_type, &item.file, item.row_groups) + item.row_group;
        let columns = KeyColumns::new(&item.batch)?;
        for i in 0..item.batch.num_rows() {
            let row = columns.row(i)?;
            ids.observe_at(
                resource_type,
                row.id,
                row.version_id,
                row.deleted,
                Some((row_group, item.first_row + i as u32)),
            );
            if let Some(search) = search.as_deref_mut() {
                index_scanned_row(search, resource_type, &row);
            }
        }
        rows += item.batch.num_rows();
    }
    tracing::info!(
        "{rows} versions of {resource_type} indexed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Put a scanned row's version into the search index, with its stored search values, or
/// values extracted again from `resource` for a live row that has none (written before
/// the `search` column existed, or by another engine).
pub(super) fn index_scanned_row(search: &mut SearchIndex, resource_type: &str, row: &KeyRow) {
    let extracted;
    let values = match (row.search, row.resource) {
        (Some(values), _) => values,
        (None, Some(resource)) if !row.deleted => {
            extracted = search_values(resource_type, resource);
            extracted.as_str()
        }
        _ => "",
    };
    index_row(search, resource_type, row, values);
}

/// Put a scanned row's version, with its search values, into the search index.
pub(super) fn index_row(search: &mut SearchIndex, resource_type: &str, row: &KeyRow, values: &str) {
    search.apply(
        resource_type,
        row.id,
        row.version_id,
        row.last_updated,
        row.deleted,
        values,
    );
}

impl Lake {
    /// Open (or start) a workspace: load its tables and id index, and replay the WAL.
    pub async fn open(options: LakeOptions) -> Result<Lake> {
        let root = resolve_data_url(&options.data)?;
        let workspace_url =
            root.join(&format!("{}/", options.workspace))
                .map_err(|e| LakeError::BadDataUrl {
                    url: root.to_string(),
                    reason: e.to_string(),
                })?;
        let mut types: HashMap<String, TypeState> = HashMap::new();
        let mut index = IdIndex::default();
        let mut flushed: HashMap<String, i64> = HashMap::new();
        let mut search = options.search_index.then(SearchIndex::default);
        let points = Arc::new(PointReader::default());
        for resource_type in list_resource_tables(&workspace_url).await? {
            let url = table_url(&workspace_url, &resource_type)?;
            let Some(mut table) = load_table(&url).await? else {
                continue;
            };
            if options.with_wal {
                table = add_missing_columns(table, &resource_type).await?;
            }
            let seq = wal_txn_version(&table).await?;
            flushed.insert(resource_type.clone(), seq);
            load_indexes(&points, &table, &resource_type, search.as_mut(), &mut index).await?;
            types.insert(
                resource_type,
                TypeState {
                    delta: Some(table),
                    buffer: TypeBuffer::default(),
                },
            );
        }

        let mut tables: HashMap<String, KindTable> = HashMap::new();
        for k in &options.kinds {
            kind::check(k.as_ref())?;
            let name = kind::qualified_name(k.as_ref());
            let delta = load_table(&kind_table_url(&workspace_url, k.as_ref())?).await?;
            if let Some(t) = &delta {
                flushed.insert(name.clone(), wal_txn_version(t).await?);
            }
            tables.insert(
                name,
                KindTable {
                    kind: k.clone(),
                    delta,
                    tail: Vec::new(),
                },
            );
        }

        let views = views::load_views(&workspace_url).await?;

        if let Some(s) = &search {
            let (resources, keys, values) = s.stats();
            tracing::info!(
                "search index: {resources} resources, {keys} keys, {values} date/number/quantity values"
            );
        }
        let mut next_seq = flushed.values().copied().max().unwrap_or(0) + 1;
        let mut wal_lock = None;
        let mut tail_rows = 0usize;
        let wal = if options.with_wal {
            let dir = wal_dir(&options, &workspace_url);
            wal_lock = Some(crate::wal::lock_dir(&dir)?);
            let replay = Wal::replay(&dir, options.wal_recovery)?;
            let mut replayed = 0usize;
            for entry in replay.entries {
                match entry {
                    WalEntry::Resources(rows) => {
                        for mut row in rows {
                            let done = flushed.get(&row.resource_type).copied().unwrap_or(0);
                            if row.wal_seq.is_some_and(|s| s <= done) {
                                continue; // already committed to Delta by an earlier flush
                            }
                            index.observe(&row.resource_type, &row.id, row.version_id, row.deleted);
                            if !row.deleted {
                                row.search =
                                    search_values(&row.resource_type, &row.resource).into();
                            }
                            if let Some(search) = &mut search {
                                search.apply(
                                    &row.resource_type,
                                    &row.id,
                                    row.version_id,
                                    row.last_updated,
                                    row.deleted,
                                    &row.search,
                                );
                            }
                            types
                                .entry(row.resource_type.clone())
                                .or_default()
                                .buffer
                                .insert(row);
                            replayed += 1;
                            tail_rows += 1;
                        }
                    }
                    WalEntry::Rows(rows) => {
                        // Rows of a kind this process does not know would be deleted with
                        // their segment at the next flush: refuse rather than lose them.
                        let Some(table) = tables.get_mut(&*rows.table) else {
                            return Err(LakeError::UnknownTable(format!(
                                "{}: the WAL in {} holds rows of it; open the lake with the \
                                 table kinds it was written with",
                                rows.table,
                                dir.display()
                            )));
                        };
                        if rows.seq <= flushed.get(&*rows.table).copied().unwrap_or(0) {
                            continue;
                        }
                        let batch = table.kind.decode(&rows.encoded)?;
                        tail_rows += batch.num_rows();
                        replayed += batch.num_rows();
                        table.tail.push((rows.seq, batch));
                    }
                }
            }
            if replayed > 0 {
                tracing::info!(
                    "replayed {replayed} writes from the WAL in {}",
                    dir.display()
                );
            }
            next_seq = next_seq.max(replay.last_seq + 1);
            Some((dir, next_seq - 1))
        } else {
            None
        };

        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let wal = wal.and_then(|(dir, last_seq)| {
                let (durable, failed) = (weak.clone(), weak.clone());
                let on_durable = Box::new(move |entries: &[WalEntry]| {
                    if let Some(shared) = durable.upgrade() {
                        shared.apply_durable(entries);
                    }
                });
                let on_failed = Box::new(move |entries: &[WalEntry]| {
                    if let Some(shared) = failed.upgrade() {
                        shared.apply_failed(entries);
                    }
                });
                match Wal::start(&dir, last_seq, on_durable, on_failed) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::error!("{e}");
                        None
                    }
                }
            });
            Shared {
                workspace_url,
                types: Mutex::new(types),
                tables: Mutex::new(tables),
                index: Mutex::new(WriteState {
                    index,
                    next_seq,
                    pending: HashMap::new(),
                }),
                tail_rows: AtomicUsize::new(tail_rows),
                max_tail_rows: options.max_tail_rows,
                max_wal_bytes: options.max_wal_bytes,
                wal,
                flush_lock: tokio::sync::Mutex::new(()),
                closed_segments: Mutex::new(Vec::new()),
                _wal_lock: wal_lock,
                points,
                search: search.map(RwLock::new),
                views: Mutex::new(views),
                maintain_views: options.with_wal,
                dicom: Default::default(),
            }
        });
        if options.with_wal && shared.wal.is_none() {
            return Err(LakeError::WalStopped(
                "the WAL writer could not be started; see the log above".into(),
            ));
        }
        let lake = Lake { shared };
        lake.catch_up_views().await;
        Ok(lake)
    }
}
