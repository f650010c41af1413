/**
 * AWS IoT Core's message broker limits that the system runs into, defined once: the local broker
 * (local/iot-broker.ts) and the local data plane (local/iot-data-plane.ts) refuse what IoT Core refuses, and
 * robots size their messages under them.
 *
 * - A PUBLISH whose payload is over IOT_MAX_PAYLOAD_BYTES is refused: over MQTT the connection is closed (lifecycle
 *   disconnectReason CLIENT_ERROR, "publish with a payload that exceeds the payload limit"), over the data plane's
 *   HTTPS Publish the answer is 413.
 * - QoS 2 is not supported: a PUBLISH or SUBSCRIBE asking for it gets no PUBREC/SUBACK; the local broker closes the
 *   connection (CLIENT_ERROR), the data plane answers 400.
 */
export const IOT_MAX_PAYLOAD_BYTES = 128 * 1024;
/** The highest MQTT QoS IoT Core supports. */
export const IOT_MAX_QOS = 1;
/** A topic name's limits on publish: bytes of UTF-8, and forward slashes (eight levels). */
export const IOT_MAX_TOPIC_BYTES = 256;
export const IOT_MAX_TOPIC_SLASHES = 7;
