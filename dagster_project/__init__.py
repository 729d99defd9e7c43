"""The Dagster Definitions: resources, schedules and sensors over assets/."""
