-- Fills the tables of tables.sql the way knit-bench-store fills a Knit store: psql variables count and
-- shards. Data i is an upload (Knitfab's pseudo plan knit#uploaded, output /upload) whose Run is done,
-- stamped (count - i) ms before now, tagged shard:<i % shards> and batch:<i / 1000>.

insert into plan (active, hash) values (true, md5(''));
insert into output (plan_id, path) select plan_id, '/upload' from plan;

create temporary table fill as
select i, gen_random_uuid()::varchar as knit_id, gen_random_uuid()::varchar as run_id,
       now() - (:count - i) * interval '1 millisecond' as stamp
from generate_series(0, :count - 1) as i;

insert into knit_id (knit_id) select knit_id from fill;
insert into run (run_id, plan_id, status, lifecycle_suspend_until, updated_at)
select run_id, (select plan_id from plan), 'done', stamp, stamp from fill;
insert into data (knit_id, volume_ref, plan_id, run_id, output_id)
select knit_id, 'data-knitid-' || knit_id, (select plan_id from plan), run_id, (select output_id from output)
from fill;
insert into knit_timestamp (knit_id, "timestamp") select knit_id, stamp from fill;

insert into tag_key (key) values ('shard'), ('batch');
insert into tag (key_id, value)
select id, v::varchar from tag_key, generate_series(0, :shards - 1) as v where key = 'shard';
insert into tag (key_id, value)
select id, v::varchar from tag_key, generate_series(0, (:count - 1) / 1000) as v where key = 'batch';

create temporary table tag_ids as
select tag.id, key, value from tag join tag_key on tag_key.id = tag.key_id;
create index on tag_ids (key, value);
insert into tag_data (tag_id, knit_id)
select tag_ids.id, fill.knit_id from fill join tag_ids on key = 'shard' and value = (i % :shards)::varchar
union all
select tag_ids.id, fill.knit_id from fill join tag_ids on key = 'batch' and value = (i / 1000)::varchar;
