package io.remedyledger.examples;

import io.apicurio.registry.serde.Legacy4ByteIdHandler;
import io.apicurio.registry.serde.SerdeConfig;
import io.apicurio.registry.serde.avro.AvroKafkaSerializer;
import io.apicurio.registry.serde.avro.strategy.QualifiedRecordIdStrategy;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes an order, an incident and a remedy request to Remedy Ledger's input topics, as any
 * upstream service in Java would: Avro records built from the project's .avsc files, serialized
 * in the Confluent wire format with schema ids from the registry, keyed by customer_id and
 * partitioned by Kafka's default partitioner (murmur2 of the key bytes), as the worker expects.
 */
public final class JavaProducer {

    /** The namespace of every Remedy Ledger record (schemas/README.md). */
    static final String NAMESPACE = "remedy_ledger.v1";
    /** A released schema file's path in released.json: avro/rN/Name.avsc. */
    static final Pattern RELEASED_FILE = Pattern.compile("\"avro/r([1-9][0-9]*)/([A-Za-z][A-Za-z0-9_]*)\\.avsc\"");
    /** How long one send waits for all in-sync replicas; an outage becomes an error, not a hang. */
    static final long SEND_TIMEOUT_S = 60;
    /** Longest the producer blocks in send() for metadata or buffer space. */
    static final int MAX_BLOCK_MS = 30_000;

    private JavaProducer() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && (args[0].equals("-h") || args[0].equals("--help"))) {
            System.out.println(Options.USAGE);
            return;
        }
        Options options = Options.parse(args);
        if (options == null) {
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }
        Map<String, Schema> types = loadReleasedSchemas(options.schemasDir);
        Properties config = producerConfig(options);
        String customerId = options.customerId;
        String run = options.runId;
        Instant now = Instant.now().truncatedTo(ChronoUnit.MILLIS);
        String orderId = "o-java-" + run;
        String incidentId = "i-java-" + run;
        String requestId = "r-java-" + run;

        GenericRecord item = new GenericRecordBuilder(types.get(NAMESPACE + ".OrderItem"))
                .set("sku", "sku-java-1").set("quantity", 2).set("unit_price_cents", 2_000L).build();
        GenericRecord order = new GenericRecordBuilder(types.get(NAMESPACE + ".OrderPlaced"))
                .set("event_id", "eo-java-" + run).set("order_id", orderId).set("customer_id", customerId)
                .set("placed_at", now.minus(3, ChronoUnit.HOURS).toEpochMilli())
                .set("total_cents", 4_000L).set("currency", "USD").set("items", List.of(item))
                .set("shipping_address_id", "addr-java-" + run).set("digital", false).build();
        Schema incidentSchema = types.get(NAMESPACE + ".IncidentReported");
        GenericRecord incident = new GenericRecordBuilder(incidentSchema)
                .set("event_id", "ei-java-" + run).set("incident_id", incidentId).set("customer_id", customerId)
                .set("order_id", orderId)
                .set("kind", enumSymbol(incidentSchema, "kind", "DAMAGED"))
                .set("source", enumSymbol(incidentSchema, "source", "CUSTOMER"))
                .set("reported_at", now.minus(2, ChronoUnit.HOURS).toEpochMilli())
                .set("description", "box crushed").build();
        Schema requestSchema = types.get(NAMESPACE + ".RemedyRequested");
        GenericRecord request = new GenericRecordBuilder(requestSchema)
                .set("event_id", "er-java-" + run).set("request_id", requestId).set("customer_id", customerId)
                .set("order_id", orderId).set("incident_id", incidentId)
                .set("kind", enumSymbol(requestSchema, "kind", "REFUND"))
                .set("amount_cents", options.amountCents).set("currency", "USD")
                .set("requested_by", "customer")
                .set("requested_at", now.minus(1, ChronoUnit.HOURS).toEpochMilli())
                .set("reason", "damaged in transit").build();

        String prefix = options.topicPrefix;
        try (KafkaProducer<String, GenericRecord> producer = new KafkaProducer<>(config)) {
            // In this order, each acknowledged before the next: the request finds its order and incident.
            send(producer, prefix + ".orders.v1", customerId, order);
            send(producer, prefix + ".incidents.v1", customerId, incident);
            send(producer, prefix + ".remedy-requests.v1", customerId, request);
        }
        System.out.println("published order " + orderId + ", incident " + incidentId + " and request " + requestId
                + " for customer " + customerId);
    }

    /** The producer's settings: safety options explicit, the serde writing what Confluent's does. */
    static Properties producerConfig(Options options) throws IOException {
        Properties config = new Properties();
        if (options.producerConfig != null) {
            // security.protocol, sasl.*, ssl.* of a secured cluster, as Kafka's own tools take them.
            try (InputStream in = Files.newInputStream(options.producerConfig)) {
                config.load(in);
            }
        }
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrap);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "remedy-java-producer");
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, MAX_BLOCK_MS);
        // No partitioner.class: Kafka's default partitions a keyed record by murmur2 of the key
        // bytes, the partitioner the worker checks (a record on another partition is forwarded).
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, AvroKafkaSerializer.class.getName());
        config.put(SerdeConfig.REGISTRY_URL, options.registryUrl + "/apis/registry/v2");
        // Subjects are record full names (RecordNameStrategy): the registry's default group and
        // the artifact id remedy_ledger.v1.OrderPlaced, which is the Confluent API's subject.
        config.put(SerdeConfig.ARTIFACT_RESOLVER_STRATEGY, QualifiedRecordIdStrategy.class.getName());
        // The schemas are registered by `python -m schemas register` (FULL_TRANSITIVE); a
        // producer only looks its schema up, by content, and fails if it is not registered.
        config.put(SerdeConfig.AUTO_REGISTER_ARTIFACT, false);
        config.put(SerdeConfig.FIND_LATEST_ARTIFACT, false);
        // The Confluent wire format: byte 0, a 4-byte id in the payload (no id headers), and the
        // id is the content id, which is what Apicurio's Confluent-compatible API calls a schema id.
        config.put(SerdeConfig.ID_HANDLER, Legacy4ByteIdHandler.class.getName());
        config.put(SerdeConfig.USE_ID, "contentId");
        config.put(SerdeConfig.ENABLE_HEADERS, false);
        return config;
    }

    static void send(KafkaProducer<String, GenericRecord> producer, String topic, String key, GenericRecord value)
            throws InterruptedException, ExecutionException, TimeoutException {
        RecordMetadata written = producer.send(new ProducerRecord<>(topic, key, value)).get(SEND_TIMEOUT_S, TimeUnit.SECONDS);
        System.out.println("  " + value.getSchema().getName() + " -> " + written.topic() + " partition "
                + written.partition() + " offset " + written.offset());
    }

    static GenericData.EnumSymbol enumSymbol(Schema record, String field, String symbol) {
        Schema enumSchema = record.getField(field).schema();
        if (!enumSchema.getEnumSymbols().contains(symbol)) {
            throw new IllegalArgumentException(field + ": " + symbol + " is not one of " + enumSchema.getEnumSymbols());
        }
        return new GenericData.EnumSymbol(enumSchema, symbol);
    }

    /**
     * Every named type of the latest released revision, by full name: for each type, its file in
     * the highest revision released.json lists it in. Files name other types without defining
     * them, so they are parsed once the types they name are known (Avro's parser needs that).
     */
    static Map<String, Schema> loadReleasedSchemas(Path schemasDir) throws IOException {
        String released = Files.readString(schemasDir.resolve("released.json"), StandardCharsets.UTF_8);
        Map<String, Integer> latest = new LinkedHashMap<>();
        Matcher matcher = RELEASED_FILE.matcher(released);
        while (matcher.find()) {
            latest.merge(matcher.group(2), Integer.parseInt(matcher.group(1)), Math::max);
        }
        if (latest.isEmpty()) {
            throw new IOException(schemasDir.resolve("released.json") + " lists no avro/rN/Name.avsc file");
        }
        List<Path> pending = new ArrayList<>();
        latest.forEach((name, revision) -> pending.add(schemasDir.resolve("avro/r" + revision + "/" + name + ".avsc")));
        Map<String, Schema> known = new HashMap<>();
        while (!pending.isEmpty()) {
            List<Path> waiting = new ArrayList<>();
            String lastProblem = "";
            for (Path file : pending) {
                // A fresh parser per attempt: a failed parse may leave half-defined names behind.
                Schema.Parser parser = new Schema.Parser();
                parser.addTypes(known.values());
                try {
                    Schema schema = parser.parse(file.toFile());
                    known.put(schema.getFullName(), schema);
                } catch (AvroRuntimeException undefinedTypeYet) {
                    // Avro 1.12 says AvroTypeException "Undefined schema", 1.11 SchemaParseException;
                    // a file broken for another reason never parses, which the check below reports.
                    waiting.add(file);
                    lastProblem = file + ": " + undefinedTypeYet.getMessage();
                }
            }
            if (waiting.size() == pending.size()) {
                throw new IOException("cannot parse " + waiting + " (types they name are missing?); " + lastProblem);
            }
            pending.clear();
            pending.addAll(waiting);
        }
        return known;
    }

    /** Command-line options; parse returns null for anything it does not understand. */
    static final class Options {
        static final String USAGE = String.join("\n",
                "usage: java -jar target/remedy-java-producer.jar [options]",
                "  --bootstrap HOST:PORT     Kafka (default 127.0.0.1:9092)",
                "  --registry-url URL        Apicurio Registry's base URL (default http://127.0.0.1:8081);",
                "                            the serde uses its /apis/registry/v2 API",
                "  --topic-prefix PREFIX     REMEDY_TOPIC_PREFIX of the deployment (default remedy)",
                "  --schemas-dir DIR         the repository's schemas/ directory (default ../../schemas)",
                "  --customer-id ID          the customer of the three events (default c-java-1)",
                "  --run-id ID               suffix of the events' ids (default: milliseconds now)",
                "  --amount-cents N          the refund asked for (default 1500)",
                "  --producer-config FILE    Kafka client properties to add (security.protocol, sasl.*, ssl.*)");

        String bootstrap = "127.0.0.1:9092";
        String registryUrl = "http://127.0.0.1:8081";
        String topicPrefix = "remedy";
        Path schemasDir = Path.of("../../schemas");
        String customerId = "c-java-1";
        String runId = Long.toString(System.currentTimeMillis());
        long amountCents = 1_500;
        Path producerConfig;

        static Options parse(String[] args) {
            Options options = new Options();
            for (int i = 0; i < args.length; i++) {
                String name = args[i];
                if (i + 1 >= args.length) {
                    return null;
                }
                String value = args[++i];
                switch (name) {
                    case "--bootstrap" -> options.bootstrap = value;
                    case "--registry-url" -> options.registryUrl = value.replaceAll("/+$", "");
                    case "--topic-prefix" -> options.topicPrefix = value;
                    case "--schemas-dir" -> options.schemasDir = Path.of(value);
                    case "--customer-id" -> options.customerId = value;
                    case "--run-id" -> options.runId = value;
                    case "--amount-cents" -> options.amountCents = Long.parseLong(value);
                    case "--producer-config" -> options.producerConfig = Path.of(value);
                    default -> {
                        return null;
                    }
                }
            }
            return options;
        }
    }
}
