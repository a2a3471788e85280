-- Every kept batch: model version, cut-off, coverage of the catalogue, how many users got the fallback.
SELECT batch_id, status, model_version, data_cutoff, users, fallback_users, rows, distinct_movies,
       catalogue_coverage, generated_at, published_at
FROM recommendation_batch_summary
ORDER BY batch_id DESC;
