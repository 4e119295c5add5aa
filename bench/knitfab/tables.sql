-- The part of Knitfab v1.6.1's PostgreSQL schema that its Data find-by-tags query reads, plus the tables
-- those rows must reference. Written for bench/peer-knitfab.sh from Knitfab's schema version 1 (versions 2
-- and 3 do not change these tables); see bench/README.md for the source. Column types, keys and indexes
-- follow Knitfab's declarations; keys and indexes are added after the fill (keys.sql) so that loading
-- does not pay a check per row. Tables Knitfab also has (inputs, assignments, nominations, agents, ...)
-- are left out: the query does not read them.

create type runStatus as enum (
    'deactivated', 'waiting', 'ready', 'starting', 'running',
    'completing', 'aborting', 'done', 'failed', 'invalidated'
);

create table plan (
    plan_id char(36) not null default gen_random_uuid()::varchar,
    active boolean not null default true,
    hash char(64) not null
);

create table output (
    output_id serial not null,
    plan_id char(36) not null,
    path varchar(4096) not null
);

create table knit_id (
    knit_id char(36) not null default gen_random_uuid()::varchar
);

create table run (
    run_id char(36) not null default gen_random_uuid()::varchar,
    plan_id char(36) not null,
    status runStatus not null default 'waiting',
    lifecycle_suspend_until timestamp with time zone not null default current_timestamp,
    updated_at timestamp with time zone not null default current_timestamp
);

create table data (
    knit_id char(36) not null,
    volume_ref varchar(5120) not null,
    plan_id char(36) not null,
    run_id char(36) not null,
    output_id int not null
);

create table knit_timestamp (
    knit_id char(36) not null,
    "timestamp" timestamp with time zone not null
);

create table tag_key (
    id serial not null,
    key varchar(1024) not null
);

create table tag (
    id serial not null,
    key_id int not null,
    value varchar(1048576)
);

create table tag_data (
    tag_id int not null,
    knit_id char(36) not null
);
