SELECT * FORM exchanges;

SELECT nope FROM exchanges;

SELECT * FROM exchange;

SELECT count(*) FROM exchanges WHERE start_time > 'yesterday';

CREATE TABLE copy AS SELECT * FROM exchanges;

COPY exchanges TO '/tmp/exchanges.parquet';

INSERT INTO exchanges SELECT * FROM exchanges;

SET datafusion.execution.target_partitions = 1;

SELECT * FROM 'exchanges/service=orders';
