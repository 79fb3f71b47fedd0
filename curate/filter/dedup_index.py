"""The persisted dedup index, built on the similarity library's dedup steps
(`curate.services.similarity.steps`: sign, buckets, verify, components, survivors); here:

- `DedupIndex`: incremental dedup. A persisted index of every row that went through
  dedup (id, quality score, exact key, signature, component) lets a new batch B be
  deduplicated against all earlier batches without recomputing their signatures; the
  result for B's rows equals the dedup of everything together, restricted to B.
  The pipeline uses it through `filter.dedup_index` (`drop_indexed_duplicates`, where an
  indexed row always wins: it belongs to a dataset that has shipped) and
  `curate index add` (a run's final dataset joins the index once it is accepted).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from curate.filter.config import FilterSettings
from curate.run.executor import frame_digest
from curate.run.rundir import (
    RunDir,
    atomic_write_parquet,
    atomic_write_text,
    path_exists,
    read_parquet,
    read_text,
    run_location,
)
from curate.run.services import SerialPool, WorkerPool
from curate.services.similarity.dedup import DedupParams, exact_edges, finish_dedup
from curate.services.similarity.steps import (
    bucket_pairs,
    estimate_only,
    representatives,
    sign_bands,
    sign_rows,
    verify_pairs_on,
)
from schemas.artifacts import SPLIT_EXAMPLES


def dedup_text(field: str) -> pl.Expr:
    contents = pl.col("messages").list.eval(pl.element().struct.field("content"))
    if field == "assistant":
        return contents.list.last().fill_null("")
    if field == "user":
        return contents.list.get(1, null_on_oob=True).fill_null("")
    non_system = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") != "system").struct.field("content")
    )
    return non_system.list.join("\n").fill_null("")


def dedup_params(ctx_config: FilterSettings) -> DedupParams:
    f = ctx_config.filter
    return DedupParams(threshold=f.dedup_threshold, num_perm=f.num_perm, shingle_size=f.shingle_size,
                       bands=f.lsh_bands, seed=f.dedup_seed, verify=f.dedup_verify)



# ------------------------------------------------------------------ incremental index
INDEX_SCHEMA = {
    "id": pl.String,
    "score": pl.Float64,
    "exact_key": pl.UInt64,
    "signature": pl.Binary,
    "component_id": pl.String,
}


class DedupIndex:
    """Every row that went through dedup so far, persisted at `location` (a folder or URL).

    `rows.parquet` holds, per row: id, quality score, exact key, MinHash signature
    (num_perm uint32, as bytes) and component id (the smallest id of its duplicate group);
    `params.json` the dedup parameters, which must not change between batches (else the
    signatures are not comparable: start a new index).
    """

    def __init__(self, location: str):
        self.location = location.rstrip("/")

    @property
    def rows_path(self) -> str:
        return f"{self.location}/rows.parquet"

    @property
    def params_path(self) -> str:
        return f"{self.location}/params.json"

    def load(self, columns: list[str] | None = None) -> pl.DataFrame:
        if not path_exists(self.rows_path):
            return pl.DataFrame(schema=INDEX_SCHEMA).select(columns or list(INDEX_SCHEMA))
        return read_parquet(self.rows_path, columns)

    def ids(self) -> pl.Series:
        """The indexed ids alone (a column read: no signatures)."""
        return self.load(["id"])["id"]

    def _check_params(self, params: DedupParams) -> None:
        if path_exists(self.params_path):
            stored = json.loads(read_text(self.params_path))
            if stored != _params_json(params):
                raise ValueError(
                    f"dedup index {self.location} was built with {stored}, not {_params_json(params)}: "
                    "signatures are not comparable; use a new index"
                )

    def dedup(
        self, frame: pl.DataFrame, *, text: str, id_col: str = "example_id", score: str = "quality_score",
        params: DedupParams | None = None, commit: bool = True, prefer_indexed: bool = False,
        pool: WorkerPool | None = None,
    ) -> pl.DataFrame:
        """Dedup `frame` against itself and every indexed row; add it to the index.

        Returns `frame` sorted by id with `component_id` (smallest id of its group, over
        all batches), `survivor`, `survivor_id` and `exact_duplicate`. A row of `frame`
        that duplicates an indexed row with a better score (or equal score and smaller
        id) is not a survivor; with `prefer_indexed`, an indexed row beats any new one.
        Ids already in the index are an error (a batch is indexed once). The new rows are
        signed, and the union's band keys, buckets, verification and survivors computed, by
        the dedup steps on `pool`; pairs are verified by the MinHash estimate (the indexed
        rows' texts are not kept).
        """
        params = params or DedupParams()
        pool = pool or SerialPool()
        partitions = max(1, pool.workers)
        self._check_params(params)
        old = self.load()
        new = frame.sort(id_col)
        clash = new.filter(pl.col(id_col).is_in(old["id"].implode()))
        if clash.height:
            raise ValueError(f"{clash.height} ids are already in the dedup index (first: {clash[id_col][0]})")
        signed = sign_rows(new[text], params, pool, partitions=0)
        new_keys, new_sig, new_lengths = signed.keys, signed.sig, signed.lengths
        old_sig = (
            np.frombuffer(b"".join(old["signature"].to_list()), dtype=np.uint32).reshape(old.height, params.num_perm)
            if old.height
            else np.zeros((0, params.num_perm), dtype=np.uint32)
        )
        nonempty_new = new_lengths > 0
        # the union, in id order (the order dedup_frame works in)
        union = pl.concat([
            old.select(pl.col("id"), pl.col("score"), pl.col("component_id"), pl.lit(False).alias("is_new")),
            pl.DataFrame({
                "id": new[id_col].cast(pl.String), "score": new[score].cast(pl.Float64),
                "component_id": pl.Series([None] * new.height, dtype=pl.String),
                "is_new": pl.Series([True] * new.height),
            }),
        ]).with_row_index("source")
        order = union["id"].arg_sort().to_numpy()
        union = union[order]
        keys = np.concatenate([old["exact_key"].to_numpy(), new_keys])[order]
        sig = np.concatenate([old_sig, new_sig])[order]
        # an empty text has the all-empty signature and no band keys
        nonempty = np.concatenate([(old_sig != np.uint32(0xFFFFFFFF)).any(axis=1), nonempty_new])[order]
        is_new = union["is_new"].to_numpy()
        n = union.height
        position = pl.DataFrame({"id": union["id"], "pos": np.arange(n, dtype=np.int64)})
        # earlier groups: a star from each indexed row to its group's first row
        members = union.with_columns(pl.Series("pos", np.arange(n))).filter(~pl.col("is_new"))
        stars = members.join(position.rename({"id": "component_id", "pos": "root"}), on="component_id", how="left")
        star_edges = stars.select("pos", "root").to_numpy().astype(np.int64) if stars.height else np.zeros((0, 2), np.int64)
        ex_edges = exact_edges(keys)
        keep = representatives(keys, nonempty.astype(np.int64))
        bands = sign_bands(sig, np.flatnonzero(keep), params, pool, partitions)
        # only buckets holding a new row can add edges the index does not already imply
        pairs = bucket_pairs(bands, params, pool, touch=is_new)
        near, _ = verify_pairs_on(pairs, sig, None, estimate_only(params), pool)
        rank = pl.when(pl.lit(pl.Series(is_new))).then(pl.col("score")).otherwise(float("inf"))
        frame_u = union.select("id", (rank if prefer_indexed else pl.col("score")).alias("score"))
        # the index's own groups (stars) count as exact edges: components, survivors, flags as in dedup_frame
        judged, _ = finish_dedup(frame_u, keys, np.concatenate([star_edges, ex_edges]), near,
                                 len(pairs), id_col="id", score="score", pool=pool, partitions=partitions)
        component_id = union["id"].gather(judged["component"])
        result = pl.DataFrame({
            "id": union["id"], "component_id": component_id, "survivor": judged["survivor"],
            "survivor_id": judged.select(pl.col("id").filter(pl.col("survivor")).first().over("component"))["id"],
            "exact_duplicate": judged["exact_duplicate"],
        }).filter(pl.Series(is_new))
        out = new.with_columns(pl.col(id_col).cast(pl.String).alias("__id")).join(
            result.rename({"id": "__id"}), on="__id", how="left"
        ).drop("__id")
        if commit:
            index = pl.DataFrame({
                "id": union["id"], "score": union["score"], "exact_key": keys,
                "signature": [row.tobytes() for row in sig], "component_id": component_id,
            }, schema=INDEX_SCHEMA)
            atomic_write_parquet(index, self.rows_path)
            atomic_write_text(self.params_path, json.dumps(_params_json(params), sort_keys=True))
        return out.sort(id_col)


def _params_json(params: DedupParams) -> dict[str, Any]:
    return {
        "threshold": params.threshold, "num_perm": params.num_perm, "shingle_size": params.shingle_size,
        "bands": list(params.banding), "seed": params.seed, "max_bucket": params.max_bucket,
    }


# ------------------------------------------------------------------ the pipeline's index
def index_location(config: FilterSettings) -> str | None:
    """`filter.dedup_index` as a path or URL (a relative path is from the config's folder)."""
    value: str | None = config.filter.dedup_index
    if not value:
        return None
    return value if "://" in value else str(config.resolve(value))


def index_digest(config: FilterSettings) -> str | None:
    """What the dedup stage reads from the index (its ids), for the stage's fingerprint:
    adding a dataset to the index makes the next run deduplicate again."""
    location = index_location(config)
    if location is None:
        return None
    return frame_digest(DedupIndex(location).ids().sort().to_frame())


def drop_indexed_duplicates(
    frame: pl.DataFrame, *, text: str, location: str, params: DedupParams,
    id_col: str = "example_id", score: str = "quality_score", pool: WorkerPool | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `frame` into rows kept and rows that duplicate an indexed row.

    An indexed row always wins, whatever the scores, because its dataset has already
    shipped. A row whose id is already indexed (the same example, accepted before)
    duplicates itself. The dropped rows get `duplicate_of`. The index is read, not
    changed.
    """
    index = DedupIndex(location)
    indexed = index.ids()
    if indexed.len() == 0 or frame.height == 0:
        return frame, frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias("duplicate_of"))
    seen = frame[id_col].cast(pl.String).is_in(indexed.implode())
    again = frame.filter(seen).with_columns(pl.col(id_col).cast(pl.String).alias("duplicate_of"))
    rest = frame.filter(~seen)
    if rest.height == 0:
        return rest, again
    judged = index.dedup(rest, text=text, id_col=id_col, score=score, params=params,
                         commit=False, prefer_indexed=True, pool=pool)
    # only groups holding an indexed row: two new rows were already judged by the run's own dedup
    lost = ~pl.col("survivor") & pl.col("survivor_id").is_in(indexed.implode())
    kept = judged.filter(~lost).select(frame.columns)
    dropped = judged.filter(lost).select(*frame.columns, pl.col("survivor_id").alias("duplicate_of"))
    return kept, pl.concat([again, dropped])


def add_run_to_index(config: FilterSettings, artifact: str = SPLIT_EXAMPLES.path) -> dict[str, Any]:
    """Add a run's accepted dataset to the index at `filter.dedup_index`.

    Rows the index already holds are skipped, so adding the same run twice is harmless.
    The run is read, not changed. Returns counts and the location.
    """
    location = index_location(config)
    if location is None:
        raise ValueError("filter.dedup_index is not set in the config: name the index folder or URL")
    run = RunDir(run_location(config))
    if not run.exists(artifact):
        raise FileNotFoundError(f"{run_location(config)}: no {artifact} yet (run the stages that write it first)")
    frame = run.read(artifact)
    index = DedupIndex(location)
    known = index.ids()
    new = frame.filter(~pl.col("example_id").cast(pl.String).is_in(known.implode()))
    if new.height:
        with_text = new.with_columns(dedup_text(config.filter.dedup_field).alias("__text"))
        index.dedup(with_text, text="__text", id_col="example_id", score="quality_score",
                    params=dedup_params(config), commit=True)
    return {"index": location, "artifact": artifact, "added": new.height,
            "already_indexed": frame.height - new.height, "index_rows": known.len() + new.height}
