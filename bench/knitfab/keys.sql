-- Keys, foreign keys and indexes of the tables in tables.sql, as Knitfab v1.6.1 declares them.

alter table plan add primary key (plan_id);
create index plan__active on plan (active);
create index plan__hash on plan (hash);

alter table output add primary key (output_id);
alter table output add unique (plan_id, output_id);
alter table output add foreign key (plan_id) references plan (plan_id);
create index output__plan_id on output (plan_id);

alter table knit_id add primary key (knit_id);

alter table run add primary key (run_id);
alter table run add unique (plan_id, run_id);
alter table run add foreign key (plan_id) references plan (plan_id);
create index run__plan_id on run (plan_id);
create index run__status on run (status);
create index run__lifecycle_suspend_until on run (lifecycle_suspend_until);

alter table data add primary key (knit_id);
alter table data add unique (volume_ref);
alter table data add foreign key (knit_id) references knit_id (knit_id);
alter table data add foreign key (plan_id, run_id) references run (plan_id, run_id);
alter table data add foreign key (plan_id, output_id) references output (plan_id, output_id);
create index data__run_id on data (run_id);

alter table knit_timestamp add primary key (knit_id);
alter table knit_timestamp add foreign key (knit_id) references data (knit_id);
create index knit_timestamp__timestamp on knit_timestamp ("timestamp" asc nulls last);

alter table tag_key add primary key (id);
alter table tag_key add unique (key);
create index tag_key__key on tag_key (key);

alter table tag add primary key (id);
alter table tag add unique (key_id, value);
alter table tag add foreign key (key_id) references tag_key (id);
create index tag__value on tag (value);

alter table tag_data add primary key (tag_id, knit_id);
alter table tag_data add foreign key (tag_id) references tag (id);
alter table tag_data add foreign key (knit_id) references data (knit_id);
create index tag_data__knit_id on tag_data (knit_id) include (tag_id);
