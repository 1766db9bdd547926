/* SPDX-License-Identifier: MIT */
/*
 * agg.h: in-kernel aggregation of generic.bpf.c ("probewatch trace --hist / --by /
 * --latency" on the bpf backend). The programs pw_tp_agg / pw_uprobe_agg /
 * pw_uretprobe_agg emit no records: each event updates map "agg" (per-CPU hash,
 * struct pw_agg_key -> struct pw_agg_val). User space (collect/bpf/agg.py) reads it at
 * the end and every -i interval and turns it into the same Aggregator result the
 * user-space aggregation builds. The Python side mirrors these layouts (a unit test
 * compares them against the BTF of the built object).
 */
#ifndef PW_AGG_H
#define PW_AGG_H

#define PW_AGG_FIELDS 2     /* numeric fields in a key */

/* rodata agg_keys bits: which parts of struct pw_agg_key are filled */
#define PW_AGGK_COMM 1
#define PW_AGGK_PID 2
#define PW_AGGK_TID 4
#define PW_AGGK_CPU 8
#define PW_AGGK_SLOT 16

/* rodata agg_hist */
#define PW_AGGH_NONE 0
#define PW_AGGH_LOG2 1      /* bucket = 0 for v < 0, else bit_length(v) + 1 */
#define PW_AGGH_LINEAR 2    /* bucket = floor(v / agg_step) */

/* pw_aggsrc.kind: where a number comes from */
#define PW_AGGS_NONE 0      /* unused */
#define PW_AGGS_TP 1        /* a tracepoint field: size bytes at off of the record */
#define PW_AGGS_UARG 2      /* uprobe argument number off (an INT argument) */
#define PW_AGGS_PID 3
#define PW_AGGS_TID 4
#define PW_AGGS_CPU 5
#define PW_AGGS_ABSENT 6    /* the event has no such number: not aggregated */

/* pw_aggconf.role */
#define PW_AGGR_AGG 0       /* aggregate the event */
#define PW_AGGR_ENTER 1     /* --latency: remember the time per (tid, pair) */
#define PW_AGGR_EXIT 2      /* --latency: the time since the enter, into a log2 hist */
#define PW_AGGR_SKIP 3      /* counted only (slot_counts) */

/* map "agg_stats" (per-CPU array) */
#define PW_AGGST_FULL 0      /* events whose key did not fit in map "agg" */
#define PW_AGGST_UNMATCHED 1 /* latency: exits without an enter, enters overwritten */
#define PW_AGGST_START_FULL 2 /* latency: enters that did not fit in "agg_start" */
#define PW_AGGST_MAX 4

struct pw_aggsrc {
	__u8 kind;   /* PW_AGGS_* */
	__u8 size;   /* PW_AGGS_TP: 1, 2, 4 or 8 bytes */
	__u8 sign;   /* sign-extend from size bytes */
	__u8 _pad;
	__u16 off;   /* PW_AGGS_TP: offset in the record; PW_AGGS_UARG: argument index */
	__u16 _pad2;
}; /* 8 bytes */

/* per slot (map "aggconf") */
struct pw_aggconf {
	struct pw_aggsrc key[PW_AGG_FIELDS];
	struct pw_aggsrc value;
	__u8 role;  /* PW_AGGR_* */
	__u8 _pad;
	__u16 pair; /* --latency: the enter/exit pair's number */
	__u32 _pad2;
}; /* 32 bytes */

struct pw_agg_key {
	char comm[16];
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	__u32 slot;
	__u32 pair;
	__u32 _pad;
	__s64 f[PW_AGG_FIELDS];
	__s64 bucket;
}; /* 64 bytes */

struct pw_agg_val {
	__u64 count;
	__u64 sum; /* of the value (two's complement: signed values wrap as s64) */
};

struct pw_agg_start_key {
	__u32 tid;
	__u32 pair;
};

#endif /* PW_AGG_H */
