// Package driverkit holds what every job driver of this repository needs the same way: the job
// context handed to PHP workers, header merging on requeue, the pipeline map (Pipeline), reading a
// pipeline's settings with errors that name driver, pipeline, key and value (Options), and what a
// driver's endure plugin keeps from Init (Deps, Logger, Configurer). Drivers import it (and api/v4),
// never the plugin's root package, so they also run inside the stock RoadRunner jobs plugin.
package driverkit
